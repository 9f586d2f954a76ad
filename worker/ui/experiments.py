"""Experiments: the list (`thankly experiments list`) and each experiment's report
(`thankly experiments report`, worker/experiments/report.py): per arm what was planned,
sent, held out, opened, clicked, unsubscribed and converted, with rates and 95% intervals,
each comparison's lift, interval, p-value and needed size, and the verdict, in words. A
chart draws each arm's conversion rate with its interval, server-side, as inline SVG.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from worker.experiments.report import UnknownExperiment, list_experiments, report
from worker.http.admin import rules_in_force
from worker.planning.rules_model import HOLDOUT
from worker.ui.access import viewer
from worker.ui.pages import Formats, format_locale, page, runtime_of, viewer_zone

router = APIRouter()
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")


@router.get("/experiments", response_class=HTMLResponse)
def experiments_list(request: Request) -> Response:
    who = viewer(request)
    runtime = runtime_of(request)
    rows = list_experiments(runtime.session_factory, rules_in_force(runtime))
    return page(request, "experiments.html", who, rows=rows)


def _since(text: str, request: Request) -> datetime | None:
    """`since`: a day (YYYY-MM-DD, from the viewer's midnight) or an ISO time."""
    text = text.strip()[:64]
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(
            422, f"since {text!r} is not a date (YYYY-MM-DD) or a time (2026-11-20T17:30Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=viewer_zone(request))
    utc = moment.astimezone(UTC)
    if not 1970 <= utc.year <= 2200:
        raise HTTPException(422, "since must be between 1970 and 2200")
    return utc


@router.get("/experiments/{name}", response_class=HTMLResponse)
def experiment_page(request: Request, name: str, since: str = "") -> Response:
    who = viewer(request)
    if not NAME.fullmatch(name):
        raise HTTPException(404, f"no experiment {name!r}")
    runtime = runtime_of(request)
    start = _since(since, request)
    try:
        result = report(
            runtime.session_factory, rules_in_force(runtime), name, runtime.clock.now(), start
        )
    except UnknownExperiment:
        raise HTTPException(
            404, f"no experiment {name!r}: not in the rules and no letter names it"
        ) from None
    formats = Formats(format_locale(request), viewer_zone(request))
    return page(
        request,
        "experiment.html",
        who,
        r=result,
        since=since.strip()[:64],
        waiting=sum(a["in_window"] for a in result["arms"]),
        chart=conversion_chart(result["arms"], formats.percent),
        holdout=HOLDOUT,
    )


# --- the chart ---------------------------------------------------------------------------

WIDTH, LABEL, RIGHT, ROW, TOP = 640, 132, 24, 40, 28


def _scale_top(highest: float) -> float:
    """The axis ends at the next of 1%, 2%, 5%, 10%, 20%, 50%, 100% above every interval."""
    for top in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5):
        if highest <= top:
            return top
    return 1.0


def conversion_chart(arms: list[dict[str, Any]], percent: Callable[[float | None], str]) -> Markup:
    """Each arm's conversion rate (a dot) and its 95% interval (a bar) on one axis from 0,
    as inline SVG: numbers drawn, every label escaped, role="img" with a title and a text
    summary that says the same as the picture."""
    highs = [a["conversion"]["interval"][1] for a in arms if a["conversion"]["interval"]]
    top = _scale_top(max(highs, default=0.0))
    plot = WIDTH - LABEL - RIGHT
    height = TOP + ROW * max(1, len(arms)) + 8

    def x(value: float) -> str:
        return f"{LABEL + plot * min(max(value / top, 0.0), 1.0):.1f}"

    parts = [
        Markup(
            '<svg class="chart conversion" viewBox="0 0 {w} {h}" role="img" '
            'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">'
        ).format(w=WIDTH, h=height),
        Markup('<title id="chart-title">Conversion rate by arm, with 95% intervals</title>'),
    ]
    summary = []
    for a in arms:
        c = a["conversion"]
        if c["rate"] is None:
            summary.append(f"{a['arm']}: no letters")
        else:
            low, high = c["interval"]
            summary.append(
                f"{a['arm']}: {percent(c['rate'])} of {a['planned']} "
                f"(95% interval {percent(low)} to {percent(high)})"
            )
    parts.append(Markup('<desc id="chart-desc">{}</desc>').format("; ".join(summary) + "."))
    for i in range(5):  # the axis: 0, a quarter, … the top
        value = top * i / 4
        parts.append(
            Markup(
                '<line class="grid" x1="{x}" x2="{x}" y1="{y1}" y2="{y2}"/>'
                '<text class="tick" x="{x}" y="{ty}" text-anchor="middle">{label}</text>'
            ).format(x=x(value), y1=TOP - 6, y2=height - 8, ty=TOP - 12, label=percent(value))
        )
    for row, a in enumerate(arms):
        middle = TOP + ROW * row + ROW / 2
        c = a["conversion"]
        kind = "holdout" if a["arm"] == HOLDOUT else "variant"
        parts.append(
            Markup(
                '<text class="arm" x="{lx}" y="{y:.1f}" text-anchor="end" '
                'dominant-baseline="middle">{label}</text>'
            ).format(lx=LABEL - 10, y=middle, label=a["arm"][:24])
        )
        if c["rate"] is None:
            parts.append(
                Markup(
                    '<text class="none" x="{x}" y="{y:.1f}" dominant-baseline="middle">'
                    "no letters</text>"
                ).format(x=LABEL + 4, y=middle)
            )
            continue
        low, high = c["interval"]
        parts.append(
            Markup(
                '<line class="interval {kind}" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}"/>'
                '<circle class="rate {kind}" cx="{cx}" cy="{y:.1f}" r="5"/>'
            ).format(kind=kind, x1=x(low), x2=x(high), cx=x(c["rate"]), y=middle)
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
