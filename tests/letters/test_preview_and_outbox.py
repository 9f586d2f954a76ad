"""`thankly preview`, and the .eml outbox used when no SMTP server is configured."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import RULES_FILE, SAMPLES, TEMPLATES
from worker.cli.main import app
from worker.delivery.senders import EmlSender, SendError
from worker.letters.message import build_message
from worker.letters.render import Rendered

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("THANKLY_RULES_FILE", str(RULES_FILE))
    monkeypatch.setenv("THANKLY_TEMPLATES_DIR", str(TEMPLATES))
    monkeypatch.setenv("THANKLY_VAR_DIR", str(tmp_path / "var"))


def preview(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["preview", *args], prog_name="thankly")
    return result.exit_code, result.stdout, result.stderr


def test_preview_text_from_a_sample(tmp_path: Path) -> None:
    code, out, _ = preview(
        "feedback_logged", "--locale", "de", "--event", str(SAMPLES / "feedback_logged.de.json")
    )
    assert code == 0
    assert out.startswith("Subject: Vielen Dank für Ihre Rückmeldung\n\nGuten Tag Katrin Müller,")
    assert "Jonas Weber" in out


def test_preview_html_goes_to_a_named_file(tmp_path: Path) -> None:
    code, out, _ = preview("deal_closed", "--locale", "ru", "--format", "html")
    assert code == 0
    path = Path(out.split("wrote ", 1)[1].split(" (open", 1)[0])
    assert path == (tmp_path / "var" / "preview" / "deal_closed.ru.html").resolve()
    assert '<html lang="ru">' in path.read_text()


def test_preview_eml_is_a_complete_message() -> None:
    code, out, _ = preview("referral_made", "--locale", "pl", "--format", "eml")
    assert code == 0
    message = email.message_from_string(out, policy=policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_preview_falls_back_and_says_so() -> None:
    code, out, err = preview("deal_closed", "--locale", "fr-CA")
    assert code == 0 and "no deal_closed in 'fr-CA'; showing 'en'" in err
    assert out.startswith("Subject: Anna, thank you for your order")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["thanks_generic"], "no letter 'thanks_generic'"),
        (["deal_closed", "--format", "pdf"], "--format 'pdf' is not one of: text, html, eml"),
        (["deal_closed", "--event", "nope.json"], "cannot read nope.json"),
    ],
)
def test_preview_usage_errors(args: list[str], message: str) -> None:
    code, _, err = preview(*args)
    assert code == 2 and message in err


def _message(message_id: str = "<abc123@shop.example>") -> email.message.EmailMessage:
    return build_message(
        rendered=Rendered("Hi", "Hello\n", "<p>Hello</p>"),
        mail_from="T <t@shop.example>",
        to="a@example.org",
        message_id=message_id,
        date=datetime(2026, 11, 23, tzinfo=UTC),
    )


def test_eml_outbox_writes_one_file_per_message_id_atomically(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    sender = EmlSender(outbox)
    sender.send(_message(), "t@shop.example", "a@example.org")
    sender.send(_message(), "t@shop.example", "a@example.org")  # a retry overwrites
    files = sorted(p.name for p in outbox.iterdir())
    assert files == ["abc123@shop.example.eml"]  # no temporary files left behind
    parsed = email.message_from_bytes((outbox / files[0]).read_bytes(), policy=policy.default)
    assert parsed["Message-ID"] == "<abc123@shop.example>"


def test_an_unwritable_outbox_is_a_transient_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(SendError) as info:
        EmlSender(blocker / "sub").send(_message(), "t@shop.example", "a@example.org")
    assert info.value.kind == "transient"


def test_message_ids_cannot_escape_the_outbox(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    EmlSender(outbox).send(_message("<../../etc/passwd@x>"), "t@shop.example", "a@example.org")
    assert [p.parent for p in outbox.rglob("*.eml")] == [outbox]
    assert json.dumps(sorted(p.name for p in outbox.iterdir())) == '["....etcpasswd@x.eml"]'
