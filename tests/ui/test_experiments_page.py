"""The experiments pages: the list, a report with its chart, and unknown names."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.conftest import NOW
from tests.experiments.conftest import deal, rules_text
from tests.helpers import all_letters, ingest_doc
from tests.ui.conftest import client_for
from worker.clock import FixedClock
from worker.experiments.report import report
from worker.models import Letter
from worker.planning.rules_model import HOLDOUT
from worker.runtime import Runtime
from worker.ui.experiments import conversion_chart

PAGE = "/ui/experiments"
NAME = "deal-thanks-q1"


@pytest.fixture
def ui_settings(tmp_path: Path) -> dict[str, object]:
    """Rules that run an experiment on thank-you letters."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    return {"rules_file": rules}


def populate(runtime: Runtime, clock: FixedClock, n: int = 40) -> None:
    """`n` thanked deals, then a second deal a week later from every third contact."""
    for i in range(n):
        ingest_doc(runtime, deal(f"c{i}@example.org", f"d-{i}"), f"e{i}")
    clock.set(NOW + timedelta(days=7))
    for i in range(0, n, 3):
        again = deal(f"c{i}@example.org", f"d2-{i}", at=clock.now())
        ingest_doc(runtime, again, f"again{i}")


def test_signed_out_goes_to_login(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        for path in (PAGE, f"{PAGE}/{NAME}"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/ui/login?next=")


def test_list(ui_runtime: Runtime, reader: TestClient, clock: FixedClock) -> None:
    html = reader.get(PAGE).text
    assert f'href="/ui/experiments/{NAME}"' in html and "running" in html
    populate(ui_runtime, clock, 6)
    html = reader.get(PAGE).text
    letters = len(all_letters(ui_runtime))
    assert re.search(rf"<td data-label=\"Letters\" class=\"num\">{letters}</td>", html)
    assert f"a, b, {HOLDOUT}" in html and "deal-closed-thanks" in html


def test_report_matches_the_report_function(
    ui_runtime: Runtime, reader: TestClient, clock: FixedClock
) -> None:
    populate(ui_runtime, clock)
    expected = report(ui_runtime.session_factory, ui_runtime.rules.get(), NAME, clock.now())
    assert sum(a["converted"] for a in expected["arms"]) > 0
    response = reader.get(f"{PAGE}/{NAME}")
    assert response.status_code == 200
    html = response.text
    for a in expected["arms"]:
        row = re.search(rf'<th scope="row">{a["arm"]}</th>(.*?)</tr>', html, re.S)
        assert row, a["arm"]
        numbers = re.findall(r'<td class="num">([\d,]+)', row.group(1))
        assert [int(x.replace(",", "")) for x in numbers[:6]] == [
            a[k] for k in ("planned", "sent", "held_out", "opened", "clicked", "unsubscribed")
        ]
        assert f'<td class="num">{a["converted"]}</td>' in row.group(1)
    for c in expected["comparisons"]:
        assert f"{c['arm']} against {c['baseline']}" in html
        assert c["verdict"].replace("'", "&#39;") in html
        if c["needed_per_arm"]:
            assert f"{c['needed_per_arm']:,} letters an arm" in html
    assert "within 90d of the planned time" in html
    assert 'role="img"' in html and "<desc" in html


def test_since_keeps_later_letters(
    ui_runtime: Runtime, reader: TestClient, clock: FixedClock
) -> None:
    populate(ui_runtime, clock, 6)
    html = reader.get(f"{PAGE}/{NAME}", params={"since": "2026-11-25"}).text
    # Only the second deals (a week later) were planned since then.
    planned = re.findall(
        r'<th scope="row">[^<]+</th>\s*<td>[^<]*(?:<[^>]+>[^<]*)*?</td>\s*'
        r'<td class="num">(\d+)</td>',
        html,
    )
    assert sum(map(int, planned)) == 2
    bad = reader.get(f"{PAGE}/{NAME}", params={"since": "soon"})
    assert bad.status_code == 422 and "is not a date" in bad.text


def test_closed_experiment_status(ui_runtime: Runtime, reader: TestClient) -> None:
    from tests.experiments.conftest import EXPERIMENT, rewrite_rules

    rewrite_rules(ui_runtime, EXPERIMENT + "      winner: b\n")
    html = reader.get(f"{PAGE}/{NAME}").text
    assert "closed: winner b" in html
    assert "Closed: every letter since goes out as b" in html


def test_unknown_experiment_is_a_404_page(reader: TestClient) -> None:
    for name in ("no-such-test", "<script>", "UPPER"):
        response = reader.get(f"{PAGE}/{name}")
        assert response.status_code == 404
        assert (
            "no experiment" in response.text
            and "<script>" not in response.text.split("<main", 1)[1]
        )


def test_stored_arm_names_are_escaped(
    ui_runtime: Runtime, reader: TestClient, clock: FixedClock
) -> None:
    populate(ui_runtime, clock, 3)
    with ui_runtime.session_factory.begin() as session:
        session.execute(update(Letter).where(Letter.arm == "a").values(arm="<script>x</script>"))
    html = reader.get(f"{PAGE}/{NAME}").text
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html


def test_chart_draws_numbers_and_escapes_labels() -> None:
    arms = [
        {"arm": "a", "planned": 100, "conversion": {"rate": 0.1, "interval": [0.05, 0.17]}},
        {"arm": "<b>&", "planned": 0, "conversion": {"rate": None, "interval": None}},
        {"arm": HOLDOUT, "planned": 50, "conversion": {"rate": 0.02, "interval": [0.0, 0.1]}},
    ]
    svg = str(conversion_chart(arms, lambda v: "-" if v is None else f"{v:.0%}"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'role="img"' in svg and 'aria-labelledby="chart-title chart-desc"' in svg
    assert "&lt;b&gt;&amp;" in svg and "<b>" not in svg
    assert "a: 10% of 100 (95% interval 5% to 17%)" in svg
    assert "no letters" in svg
    # The axis ends at 20%: a rate of 10% is drawn half-way along the plot.
    assert ">20%</text>" in svg
    circles = re.findall(r'<circle class="rate variant" cx="([\d.]+)"', svg)
    assert circles == ["374.0"]
