"""EMP outage: connections refused for a while, then 503 with Retry-After. No CDR is lost, no
row is retried before Retry-After, the backlog drains at a bounded rate (the EMP's concurrency)
and statuses are coalesced. A 48-hour outage on an injected clock ends in dead letters that
`cpo-gateway outbox retry --all-dead` delivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER, Harness, running_gateway, write_config
from tests.test_oioi_whitelist import cli

CARD = "0A0B0C0D"
EVSE = "DE*CPO*E1001*1"
SESSIONS = 12
DELAY_S = 0.2  # the EMP answers every request this late while it recovers
CONCURRENCY = 4  # [[emp]] concurrency default: requests in flight to one EMP


class Clock:
    """A wall clock the test moves forward."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def gateway_with_clock(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[Harness]:
    clock = Clock(time.time())
    gateway = Gateway(load_config(write_config(tmp_path, emp_url=emp.url), {}), clock=clock)
    async with running_gateway(gateway, emp) as h:
        yield h


async def _sessions(h: Harness, n: int) -> None:
    async with h.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.status(1, "Available")
        for i in range(n):
            tx = await cp.start_transaction(
                1, CARD, meter_start=i * 10_000, timestamp=datetime.now(UTC) - timedelta(hours=1)
            )
            await cp.status(1, "Charging")
            assert await cp.stop_transaction(tx, i * 10_000 + 2000) is not None
            await cp.status(1, "Available")
        assert cp.pending == 0


async def test_refused_then_503_loses_nothing_and_honours_retry_after(harness: Harness) -> None:
    h, emp = harness, harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3)
    async with h.client() as client:
        assert (await client.rfid_post(PARTNER, [CARD]))[0] == 200
    await emp.refuse()
    await _sessions(h, SESSIONS)
    await asyncio.sleep(1.0)  # several delivery attempts meet a refused connection
    assert not emp.cdrs
    emp.fail_next(6, 503, retry_after="2")
    emp.set_delay(DELAY_S)
    recovered_at = len(emp.requests)
    await emp.accept()
    await emp.wait_for(lambda: len(emp.cdrs) == SESSIONS, timeout=30)
    await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Available", timeout=10)
    await asyncio.sleep(0.5)  # a few more ticks: nothing else may follow
    after = emp.requests[recovered_at:]
    # No row was sent again before the Retry-After it was given had passed.
    for i, first in enumerate(after):
        if first.answered_status != 503 or not first.body:
            continue
        again = [r for r in after[i + 1 :] if r.call == first.call and r.body == first.body]
        if again:
            assert again[0].received_at - first.received_at >= 2.0 - 0.01, first.call
    # Bounded rate: never more requests in one answer delay than the EMP's concurrency.
    times = sorted(r.received_at for r in after[6:])
    busiest = max(sum(1 for t in times if start <= t < start + DELAY_S * 0.9) for start in times)
    assert busiest <= CONCURRENCY, f"{busiest} requests within one answer delay"
    # Coalesced: the EVSE's status went through many changes, one post carries the newest.
    posted = [
        r.body["status"] for r in after
        if r.call == "connector-post-status" and r.body.get("connector-id") == EVSE
        and r.answered_status == 200
    ]  # fmt: skip
    assert posted == ["Available"]
    assert emp.duplicates == 0
    assert len(emp.cdrs) == SESSIONS and {c["energy-consumed"] for c in emp.cdrs.values()} == {2.0}


async def test_a_48_hour_outage_ends_in_dead_letters_that_retry_all_dead_delivers(
    tmp_path: Path, gateway_with_clock: Harness
) -> None:
    h, emp = gateway_with_clock, gateway_with_clock.emp
    clock = h.gateway.clock
    assert isinstance(clock, Clock)
    async with h.client() as client:
        assert (await client.rfid_post(PARTNER, [CARD]))[0] == 200
    await emp.refuse()
    await _sessions(h, 2)
    attempts_seen: set[int] = set()
    # Two simulated hours per step: past the 1 h back-off cap, so each step retries once.
    for _ in range(30):
        clock.now += 2 * 3600
        await asyncio.sleep(0.3)
        rows = await h.store.list_outbox("dead")
        attempts_seen.update(r.attempts for r in await h.store.list_outbox())
        if {r.kind for r in rows} >= {"cdr", "station"}:
            break
    dead = await h.store.list_outbox("dead")
    assert len([r for r in dead if r.kind == "cdr"]) == 2
    assert max(attempts_seen) >= 10, "retried all along the outage"
    assert not emp.cdrs
    await emp.accept()
    config = tmp_path / "gateway.toml"
    code, out, _ = await cli(config, "outbox", "retry", "--all-dead")
    assert code == 0 and out.endswith("row(s) queued again\n")
    await emp.wait_for(lambda: len(emp.cdrs) == 2, timeout=10)
    assert await h.store.list_outbox("dead") == []
