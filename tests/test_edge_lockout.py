"""A failure limit never lets a stranger lock out the rightful charger: failures count per
(source, charge point), per source only the ids it failed for, and a verified credential
passes even while the id is under attack."""

from __future__ import annotations

import base64
from pathlib import Path

import structlog
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cpo_gateway.csms.passwords import hash_password
from cpo_gateway.ratelimit import LoginLimiter
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.test_csms_support import CP, config, running

GOOD = "correct-horse-battery-01"
STRANGER = "127.0.0.2"


def test_a_stranger_blocks_only_himself() -> None:
    limiter = LoginLimiter(max_failures=10, max_identities=20, clock=lambda: 0.0)
    for _ in range(20):
        limiter.failed("198.51.100.7", "CP-X")
    assert limiter.blocked("198.51.100.7", "CP-X")
    assert not limiter.blocked("203.0.113.1", "CP-X")  # the real charger, at its address
    assert not limiter.blocked("198.51.100.7", "CP-Y")  # one id is not a spray


def test_a_source_spraying_ids_is_blocked_but_a_nat_neighbour_is_not() -> None:
    limiter = LoginLimiter(max_failures=10, max_identities=20, clock=lambda: 0.0)
    nat = "192.0.2.1"  # chargers behind one carrier NAT
    for _ in range(50):
        limiter.failed(nat, "CP-MISCONFIGURED")
    assert not limiter.blocked(nat, "CP-NEIGHBOUR")
    for i in range(20):
        limiter.failed("198.51.100.9", f"CP-{i:03d}")
    assert limiter.blocked("198.51.100.9", "CP-999")


async def _status(url: str, password: str, source: str = "127.0.0.1") -> int:
    token = base64.b64encode(f"{CP}:{password}".encode()).decode()
    try:
        async with websockets.connect(
            f"{url}/{CP}",
            subprotocols=[Subprotocol("ocpp1.6")],
            additional_headers={"Authorization": f"Basic {token}"},
            local_addr=(source, 0),
            open_timeout=10,
        ):
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)


async def test_a_stranger_failing_for_a_charger_does_not_lock_it_out(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with running(config(tmp_path, emp), emp) as h:
        await h.store.set_password_hash(CP, hash_password(GOOD))
        with structlog.testing.capture_logs() as events:
            strangers = [await _status(h.ocpp_url, f"guess-{i:04d}", STRANGER) for i in range(20)]
        assert strangers[0] == 401 and strangers[-1] == 429, strangers
        assert all(e.get("source") == STRANGER for e in events if "refused" in e)
        # The real charger, never verified before, from its own address.
        assert await _status(h.ocpp_url, GOOD) == 101


async def test_a_verified_charger_passes_even_behind_the_strangers_address(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    """Behind one carrier NAT the stranger and the charger share an address."""
    async with running(config(tmp_path, emp), emp) as h:
        await h.store.set_password_hash(CP, hash_password(GOOD))
        assert await _status(h.ocpp_url, GOOD) == 101
        strangers = [await _status(h.ocpp_url, f"guess-{i:04d}") for i in range(20)]
        assert strangers[-1] == 429, strangers
        assert await _status(h.ocpp_url, GOOD) == 101
        assert await _status(h.ocpp_url, "guess-9999") == 429  # guessing stays limited
