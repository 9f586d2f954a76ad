"""Wrong dashboard tokens from one address slow that address down, and only that one."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from tests.ui.conftest import ADMIN_TOKEN, ORIGIN, client_for
from worker.runtime import Runtime
from worker.ui import throttle
from worker.ui.throttle import LIMIT, WINDOW, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_waits_after_the_limit_until_its_oldest_failure_ages_out() -> None:
    clock = Clock()
    guard = LoginThrottle(clock)
    for _ in range(LIMIT):
        assert guard.wait("10.0.0.1") == 0
        guard.failed("10.0.0.1")
        clock.now += 10
    assert guard.wait("10.0.0.1") == WINDOW - 10 * LIMIT
    assert guard.wait("10.0.0.2") == 0  # another address is not slowed
    clock.now += WINDOW - 10 * LIMIT
    assert guard.wait("10.0.0.1") == 0  # the first failure aged out
    guard.failed("10.0.0.1")
    assert guard.wait("10.0.0.1") > 0  # four recent ones and this: the limit again
    guard.succeeded("10.0.0.1")
    assert guard.wait("10.0.0.1") == 0


def test_it_remembers_a_bounded_number_of_addresses() -> None:
    guard = LoginThrottle(Clock())
    for n in range(throttle.ADDRESSES + 50):
        guard.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(guard._failures) == throttle.ADDRESSES


def test_the_sign_in_answers_429_then_lets_the_right_token_in_later(ui_runtime: Runtime) -> None:
    clock = Clock()
    with client_for(ui_runtime) as client:
        client.app.state.login_throttle = LoginThrottle(clock)  # type: ignore[attr-defined]
        for _ in range(LIMIT):
            wrong = client.post("/ui/login", data={"token": "x" * 30}, headers={"origin": ORIGIN})
            assert wrong.status_code == 401
        refused = _sign_in(client)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(int(WINDOW))
        assert "too many wrong tokens from this address: try again in 5 minute(s)" in refused.text
        clock.now += WINDOW
        assert _sign_in(client).status_code == 303


def _sign_in(client: TestClient) -> httpx.Response:
    response: httpx.Response = client.post(
        "/ui/login", data={"token": ADMIN_TOKEN}, headers={"origin": ORIGIN}, follow_redirects=False
    )
    return response
