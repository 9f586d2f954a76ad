"""/admin answers edge values (huge pages and ids, extreme or naive dates, NUL bytes,
empty or huge lists) with a 4xx that says what is wrong, never a 500."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.http.test_admin_api import TOKEN, admin_runtime, api, failed_letter  # noqa: F401
from worker.runtime import Runtime

BIGINT_MAX = 2**63 - 1
INTS = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([BIGINT_MAX, BIGINT_MAX + 1, -(2**63) - 1, 2**64, 10**30]),
    st.integers(min_value=-(2**80), max_value=2**80),
)
# Any text a URL or a JSON body can carry, NUL included (PostgreSQL refuses it in strings).
TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14))])
MOMENTS = st.one_of(
    st.datetimes(timezones=ZONES),
    st.datetimes(),  # naive: no zone, so no instant
).map(lambda d: d.isoformat())
DATES = st.one_of(
    MOMENTS, st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]), TEXT
)
STATUS = st.one_of(st.sampled_from(["failed", "sent", "unknown"]), TEXT)
ERROR_CLASS = st.one_of(st.just("smtp"), st.just("connect"), TEXT)
IDS = st.one_of(st.lists(INTS, max_size=5), st.just(list(range(1, 5000))))


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _query(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Query parameters, each present or absent."""
    return st.fixed_dictionaries({}, optional={k: v for k, v in fields.items()})


REQUESTS = st.one_of(
    st.tuples(
        st.just("GET"),
        st.just("/admin/letters"),
        _query(
            status=STATUS,
            letter=TEXT,
            contact=TEXT,
            since=DATES,
            until=DATES,
            error_class=ERROR_CLASS,
            limit=INTS,
            page=INTS,
        ),
        st.none(),
    ),
    st.tuples(st.just("GET"), INTS.map(lambda i: f"/admin/letters/{i}"), st.just({}), st.none()),
    st.tuples(
        st.just("POST"),
        st.just("/admin/letters/replay"),
        st.just({}),
        _query(
            ids=IDS,
            status=_optional(STATUS),
            letter=_optional(TEXT),
            since=_optional(DATES),
            until=_optional(DATES),
            error_class=_optional(ERROR_CLASS),
            reason=_optional(TEXT),
            dry_run=st.booleans(),
            force=st.booleans(),
        ),
    ),
    st.tuples(
        st.just("POST"),
        st.sampled_from(["/admin/letters/cancel", "/admin/letters/send-now"]),
        st.just({}),
        _query(ids=IDS, reason=_optional(TEXT)),
    ),
    st.tuples(st.just("GET"), st.just("/admin/stats"), _query(since=DATES), st.none()),
    st.tuples(
        st.just("GET"), st.just("/admin/audit"), _query(letter_id=INTS, email=TEXT), st.none()
    ),
    st.tuples(st.just("GET"), st.just("/admin/suppressions"), _query(contact=TEXT), st.none()),
    st.tuples(
        st.just("POST"),
        st.just("/admin/suppressions"),
        st.just({}),
        _query(email=TEXT, reason=TEXT),
    ),
    st.tuples(
        st.just("DELETE"),
        TEXT.filter(lambda t: t.strip(".") != "").map(  # no dot segment: it would change the path
            lambda t: f"/admin/suppressions/{quote(t, safe='')}"
        ),
        _query(reason=TEXT),
        st.none(),
    ),
)


@pytest.mark.slow
@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=REQUESTS)
def test_no_edge_value_makes_the_admin_api_fail(
    api: TestClient,  # noqa: F811
    admin_runtime: Runtime,  # noqa: F811
    request: tuple[str, str, dict[str, Any], dict[str, Any] | None],
) -> None:
    method, url, params, body = request
    content = None if body is None else json.dumps(body)
    response = api.request(
        method, url, params=params, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, (method, url, params, body, response.text)


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/admin/letters", {"page": 2**62}),
        ("/admin/letters", {"limit": 10**6}),
        ("/admin/letters", {"since": "0001-01-01T00:00:00+14:00"}),
        ("/admin/letters", {"since": "2026-11-20T10:00:00"}),  # naive: which zone?
        (f"/admin/letters/{2**63}", {}),
        ("/admin/audit", {"letter_id": 2**64}),
        ("/admin/audit", {"email": "a\x00@example.org"}),
        ("/admin/stats", {"since": "9999-12-31T23:59:59-14:00"}),
    ],
)
def test_each_known_edge_is_a_422(
    api: TestClient,  # noqa: F811
    admin_runtime: Runtime,  # noqa: F811
    url: str,
    params: dict[str, Any],
) -> None:
    failed_letter(admin_runtime)
    response = api.get(url, params=params)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/letters/cancel", {"ids": []}),
        ("/admin/letters/cancel", {"ids": [2**63]}),
        ("/admin/letters/send-now", {"ids": list(range(1, 5000))}),
        ("/admin/letters/replay", {"ids": [1], "reason": "x\x00y"}),
        ("/admin/letters/replay", {"status": "failed", "until": "0001-01-01T00:00:00+01:00"}),
        ("/admin/suppressions", {"email": "a@example.org", "reason": "\x00"}),
    ],
)
def test_each_known_bad_body_is_a_422(
    api: TestClient,  # noqa: F811
    admin_runtime: Runtime,  # noqa: F811
    path: str,
    body: dict[str, Any],
) -> None:
    failed_letter(admin_runtime)
    assert api.post(path, json=body).status_code == 422
