"""`thankly templates check` (and `rules check`, which runs it): every letter in every
locale with every example event, problems reported as file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import RULES_FILE, SAMPLES, TEMPLATES
from worker.cli.main import app
from worker.letters.template_check import MINIMAL_NAME, MINIMAL_TYPES, check_templates
from worker.planning.rules import RulesStore

runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped templates and example events, laid out as in the repository."""
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    shutil.copytree(SAMPLES, tmp_path / "examples" / "events")
    monkeypatch.setenv("THANKLY_TEMPLATES_DIR", str(tmp_path / "templates"))
    monkeypatch.setenv("THANKLY_RULES_FILE", str(RULES_FILE))
    monkeypatch.setenv("THANKLY_VAR_DIR", str(tmp_path / "var"))
    return tmp_path


def break_line(project: Path, name: str, line: int, old: str, new: str) -> None:
    """Replace `old` by `new` on one line of a copied template (`old` empty: prepend)."""
    path = project / "templates" / name
    lines = path.read_text(encoding="utf-8").split("\n")
    assert old in lines[line - 1], f"{name}:{line} has no {old!r}"
    lines[line - 1] = lines[line - 1].replace(old, new, 1) if old else new + lines[line - 1]
    path.write_text("\n".join(lines), encoding="utf-8")


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), prog_name="thankly")
    return result.exit_code, result.stdout, result.stderr


def test_the_shipped_templates_pass_with_every_example_event() -> None:
    rules = RulesStore(RULES_FILE, TEMPLATES).get()
    report = check_templates(TEMPLATES, rules=rules)
    assert report.problems == []
    assert report.examples == SAMPLES.resolve() and report.examples_found
    examples = sorted(p.name for p in SAMPLES.glob("*.json"))
    minimal = [f"{MINIMAL_NAME} ({kind})" for kind in MINIMAL_TYPES]
    assert examples and report.events == [*examples, *minimal]
    assert report.letters == 16  # 4 letters in en, ru, de and pl


def test_the_command_prints_a_one_line_summary_and_exits_0(project: Path) -> None:
    code, out, _ = invoke("templates", "check")
    events = len(list(SAMPLES.glob("*.json"))) + len(MINIMAL_TYPES)
    assert (code, out) == (0, f"16 letters × {events} events: no problems\n")


@pytest.mark.parametrize(
    ("name", "line", "old", "new", "expected"),
    [
        (
            "deal_closed/en/body.html",
            4,
            "{{ greeting }}",
            "{{ greting }}",
            "deal_closed/en/body.html:4: UndefinedError: 'greting' is undefined",
        ),
        (
            "feedback_logged/de/body.txt",
            3,
            "",
            "{% endfor %}",
            "feedback_logged/de/body.txt:3: syntax error: Encountered unknown tag 'endfor'",
        ),
        (
            "referral_made/pl/body.txt",
            1,
            "",
            "Hej { contact.first_name }}! ",
            "referral_made/pl/body.txt:1: '}}' is not part of a tag",
        ),
        (
            "deal_closed/ru/subject.txt",
            1,
            "",
            "{{ deal.title }}: ",
            "deal_closed/ru/subject.txt:1: prints None (a missing value: guard it with {% if %})",
        ),
        (
            "feedback_logged/en/subject.txt",
            1,
            "",
            "A rather long preamble that nobody will ever read to the end: ",
            "feedback_logged/en/subject.txt:1: subject over 60 characters, so it is cut "
            "at a word ('A rather long preamble",
        ),
        (
            "deal_closed/de/body.html",
            4,
            "</p>",
            "</div>",
            "deal_closed/de/body.html:4: HTML does not parse: </div> inside <p> (with every event)",
        ),
    ],
)
def test_a_broken_template_is_reported_at_its_file_and_line(
    project: Path, name: str, line: int, old: str, new: str, expected: str
) -> None:
    break_line(project, name, line, old, new)

    code, out, _ = invoke("templates", "check")

    assert code == 1
    problems = out.splitlines()[:-1]
    # Reported where the mistake is, and nowhere else.
    assert any(p.startswith(f"{project}/templates/{expected}") for p in problems), out
    assert all(p.startswith(f"{project}/templates/{name}:") for p in problems), out
    assert out.splitlines()[-1].endswith(f"{len(problems)} problem(s)")


def test_without_example_events_it_says_so_and_checks_the_minimal_event(project: Path) -> None:
    shutil.rmtree(project / "examples")
    break_line(project, "deal_closed/en/subject.txt", 1, "", "{{ deal.title }} ")

    code, out, err = invoke("templates", "check")

    assert f"no example events in {project / 'examples' / 'events'}" in err
    assert code == 1
    assert out.splitlines() == [
        f"{project}/templates/deal_closed/en/subject.txt:1: prints None (a missing value: "
        "guard it with {% if %}) (with every event)",
        "16 letters × 3 events: 1 problem(s)",
    ]


def test_a_broken_example_event_is_a_problem_at_its_line(project: Path) -> None:
    broken = project / "examples" / "events" / "broken.json"
    broken.write_text('{"type": "deal.closed",\n "timestamp": }\n')

    code, out, _ = invoke("templates", "check")

    assert code == 1
    assert out.splitlines()[0].startswith(f"{broken}:2: not valid JSON: Expecting value")


def test_rules_check_fails_when_a_letter_has_a_problem(project: Path) -> None:
    code, out, _ = invoke("rules", "check")
    assert code == 0 and out.splitlines()[-1].endswith("events: no problems")

    break_line(project, "referral_made/de/body.txt", 1, "", "{{ referral.nmae }}")
    code, out, _ = invoke("rules", "check")

    assert code == 1
    assert "4 rule(s), valid" in out  # the rules themselves are fine
    assert f"{project}/templates/referral_made/de/body.txt:1: UndefinedError" in out


def test_a_templates_folder_without_letters_fails(project: Path) -> None:
    shutil.rmtree(project / "templates")
    (project / "templates").mkdir()
    code, out, err = invoke("templates", "check")
    assert (code, out) == (1, "")
    assert f"error: no letters in {project / 'templates'}" in err
