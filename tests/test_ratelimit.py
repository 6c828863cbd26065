"""Failed logins (charger passwords, EMP API keys) are limited per source and identity."""

from __future__ import annotations

import base64

import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cpo_gateway.csms.passwords import hash_password
from cpo_gateway.ratelimit import FailureLimiter
from tests.conftest import Harness

GOOD = "correct-horse-battery-01"


def test_limiter_window_and_keys() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=3, window_s=10.0, clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("ip:a", "cp:x")
        limiter.failed("ip:a", "cp:x")
    assert limiter.blocked("ip:a") and limiter.blocked("cp:x") and not limiter.blocked("ip:b")
    now[0] = 10.5  # the window slid past every failure
    assert not limiter.blocked("ip:a", "cp:x")


async def _status(url: str, user: str, password: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        async with websockets.connect(
            url,
            subprotocols=[Subprotocol("ocpp1.6")],
            additional_headers={"Authorization": f"Basic {token}"},
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_failed_logins_are_rate_limited(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.store.set_password_hash("CP-BER-001", hash_password(GOOD))
    url = harness.ocpp_url + "/CP-BER-001"
    assert await _status(url, "CP-BER-001", GOOD) == 101
    statuses = [await _status(url, "CP-BER-001", f"wrong-password-{i:04d}") for i in range(10)]
    assert statuses == [401] * 10
    # Guessing waits now: the limit is checked before any password is hashed...
    assert await _status(url, "CP-BER-001", "wrong-password-9999") == 429
    # ...but a password verified before still passes: a stranger must not lock out the
    # rightful charger (tests/test_edge_lockout.py).
    assert await _status(url, "CP-BER-001", GOOD) == 101
    assert harness.gateway.csms is not None
    assert harness.gateway.csms.auth_failures == 11


async def test_wrong_oioi_keys_are_rate_limited(harness: Harness) -> None:
    from cpo_gateway.sim.emp.sandbox import EmpClient

    async with EmpClient(harness.oioi_url, "not-the-key") as bad, harness.client() as good:
        codes = [
            (await bad.session_stop("DE*CPO*E1001*1", "DE-8PS-C12345-6"))[0] for _ in range(20)
        ]
        assert codes == [401] * 20
        status, body = await bad.session_stop("DE*CPO*E1001*1", "DE-8PS-C12345-6")
        assert (status, body["result"]["code"]) == (429, 210)
        status, body = await good.session_stop("DE*CPO*E1001*1", "DE-8PS-C12345-6")
    # The limit is per source for failing requests only: the right key from the same address
    # is served (no session runs there: 182), so a stranger cannot lock the EMP out.
    assert (status, body["result"]["code"]) == (200, 182)
