"""The rules page: the rules in force, read-only, and explaining a pasted event."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import SAMPLES
from tests.experiments.conftest import rules_text
from tests.ui.conftest import ORIGIN, client_for, csrf_of, post_form
from worker.models import Event, InboxItem, Letter
from worker.planning.rules import RulesStore
from worker.runtime import Runtime
from worker.ui.rules import MAX_EVENT

PAGE = "/ui/rules"
EXPLAIN = "/ui/rules/explain"


def stored(runtime: Runtime) -> tuple[int, int, int]:
    with runtime.session_factory() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(t)) or 0
            for t in (InboxItem, Event, Letter)
        )


def sample_text(name: str = "deal_closed.en.json") -> str:
    return (SAMPLES / name).read_text()


def test_signed_out_goes_to_login(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        response = client.get(PAGE, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login?next=")


def test_reader_sees_rules_defaults_and_descriptions(reader: TestClient) -> None:
    html = reader.get(PAGE).text
    assert "4 rules" in html
    assert "Europe/Berlin" in html
    assert "mon, tue, wed, thu, fri 09:00 to 18:00, spread over 2h" in html
    assert "1 per 7d" in html
    # Each rule in the words of `thankly rules check`.
    assert (
        "deal-closed-thanks: deal.closed → deal_closed; after 24h to 72h; "
        "when deal.amount gte EUR 100 / USD 100" in html
    )
    assert "cancelled by deal.reopened, deal.lost" in html
    assert "feedback-complaint" in html and "exempt from the frequency cap" in html
    assert 'name="event"' in html and 'for="event"' in html


def test_explain_a_valid_event(ui_runtime: Runtime, reader: TestClient) -> None:
    before = stored(ui_runtime)
    response = post_form(reader, EXPLAIN, PAGE, event=sample_text(), at="")
    assert response.status_code == 200, response.text
    html = response.text
    assert "deal.closed for emily.carter@example.com" in html
    assert "deal-closed-thanks" in html and "deal_closed in en" in html
    assert "America/Chicago" in html
    assert stored(ui_runtime) == before


def test_explain_due_time_matches_the_planner(ui_runtime: Runtime, reader: TestClient) -> None:
    """The due time shown is the one `explain` computes, in the viewer's zone."""
    from worker.events import parse_event_json
    from worker.planning.explain import explain

    event = parse_event_json(sample_text())
    rules = ui_runtime.rules.get()
    expected = explain(event, rules, ui_runtime.rules.catalogue, ui_runtime.clock.now())
    due = datetime.fromisoformat(expected["due_at"].replace("Z", "+00:00"))
    reader.cookies.set("thankly_tz", "Asia/Tokyo")
    html = post_form(reader, EXPLAIN, PAGE, event=sample_text()).text
    assert f'datetime="{expected["due_at"]}"' in html
    in_tokyo = due.astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"{in_tokyo:%H:%M:%S}</time> (Asia/Tokyo)" in html
    in_chicago = due.astimezone(ZoneInfo("America/Chicago"))
    assert f"{in_chicago:%H:%M:%S} for the contact (America/Chicago)" in html


def test_explain_as_if_at_another_time(ui_runtime: Runtime, reader: TestClient) -> None:
    # Sent a month after it happened: too old to plan, unless it arrived back then.
    doc = json.loads(sample_text())
    doc["timestamp"] = "2026-10-01T12:00:00Z"
    text = json.dumps(doc)
    old = post_form(reader, EXPLAIN, PAGE, event=text).text
    assert "Nothing is sent" in old
    then = post_form(reader, EXPLAIN, PAGE, event=text, at="2026-10-01T12:00").text
    assert "deal-closed-thanks" in then and "Nothing is sent" not in then
    assert 'datetime="2026-10-01T12:00:00+00:00"' in then  # UTC is the reader's zone
    bad = post_form(reader, EXPLAIN, PAGE, event=text, at="yesterday")
    assert bad.status_code == 422 and "is not a date and time" in bad.text


def test_explain_an_event_that_sends_nothing(reader: TestClient) -> None:
    html = post_form(reader, EXPLAIN, PAGE, event=sample_text("deal_lost.json")).text
    assert "Nothing is sent: deal.lost sends no letter" in html


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "this is not valid JSON"),
        ('{"type": "deal.closed"}', "this is not a valid event"),
        ('{"type": "deal.won", "timestamp": "2026-11-20T10:00:00Z", "data": {}}', "type:"),
        ("   ", "paste an event"),
    ],
)
def test_explain_refuses_junk_clearly(
    ui_runtime: Runtime, reader: TestClient, text: str, message: str
) -> None:
    before = stored(ui_runtime)
    response = post_form(reader, EXPLAIN, PAGE, event=text)
    assert response.status_code == 422
    assert message in response.text
    assert 'role="alert"' in response.text
    assert stored(ui_runtime) == before


def test_explain_escapes_what_was_pasted(reader: TestClient) -> None:
    doc = json.loads(sample_text())
    doc["data"]["contact"]["email"] = "<script>alert(1)</script>@x"
    response = post_form(reader, EXPLAIN, PAGE, event=json.dumps(doc))
    assert response.status_code == 422
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text  # kept in the textarea, as text


def test_explain_caps_the_size(ui_runtime: Runtime, reader: TestClient) -> None:
    padding = "x" * (MAX_EVENT + 10)
    response = post_form(reader, EXPLAIN, PAGE, event=f'{{"pad": "{padding}"}}')
    assert response.status_code == 422 and "too long" in response.text
    huge = post_form(reader, EXPLAIN, PAGE, event="x" * (20 * MAX_EVENT))
    assert huge.status_code == 413 and "too long" in huge.text


def test_explain_needs_csrf_and_this_site(reader: TestClient) -> None:
    token = csrf_of(reader.get(PAGE).text)
    for data, origin in (
        ({"event": sample_text()}, ORIGIN),
        ({"event": sample_text(), "csrf": "forged"}, ORIGIN),
        ({"event": sample_text(), "csrf": token}, "https://evil.example"),
    ):
        response = reader.post(EXPLAIN, data=data, headers={"origin": origin})
        assert response.status_code == 403


def test_experiments_and_arms(tmp_path: Path, ui_runtime: Runtime, reader: TestClient) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    ui_runtime.rules = RulesStore(rules, ui_runtime.settings.templates_dir)
    html = reader.get(PAGE).text
    assert 'href="/ui/experiments/deal-thanks-q1"' in html
    assert "a: deal_closed; b: deal_closed (short)" in html
    explained = post_form(reader, EXPLAIN, PAGE, event=sample_text()).text
    assert "of experiment" in explained


def test_a_refused_edit_is_shown(tmp_path: Path, ui_runtime: Runtime, reader: TestClient) -> None:
    import os

    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    ui_runtime.rules = RulesStore(rules, ui_runtime.settings.templates_dir)
    assert "deal-thanks-q1" in reader.get(PAGE).text
    rules.write_text("rules: [{name: <b>broken</b>}]\n")
    os.utime(rules, ns=(1, 1))
    html = reader.get(PAGE).text
    assert "The last edit of the rules file was refused" in html
    assert "deal-thanks-q1" in html and "<b>broken" not in html
