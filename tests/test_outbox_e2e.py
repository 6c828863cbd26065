"""The outbox through a running gateway: written with the change, coalesced, listed and
re-queued from the CLI, and resumed after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER, Harness, write_config
from tests.test_oioi_whitelist import cli

EVSE = "DE*CPO*E1001*1"


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll an async condition every 20 ms; fail naming it after `timeout` seconds."""
    for _ in range(int(timeout / 0.02) + 1):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still false after {timeout}s: {predicate.__qualname__}")


@asynccontextmanager
async def running(config: Path) -> AsyncIterator[Gateway]:
    gateway = Gateway(load_config(config, {}))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()
    assert gateway.tasks.failures == 0


async def outbox_rows(h: Harness | Gateway, kind: str) -> list[dict[str, Any]]:
    store = h.store
    rows = await store.db.all("SELECT * FROM outbox WHERE kind = ? ORDER BY id", (kind,))
    return [dict(r) for r in rows]


async def test_the_cdr_row_exists_once_stop_is_acknowledged(harness: Harness) -> None:
    emp = harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3)
    async with harness.client() as client:
        await client.rfid_post(PARTNER, ["0A0B0C0D"])
    await emp.refuse()  # nothing can be delivered: the row must be in the outbox
    async with harness.charger("CP-BER-001") as cp:
        await cp.connect()
        tx = await cp.start_transaction(
            1, "0A0B0C0D", meter_start=1000, timestamp=datetime.now(UTC) - timedelta(hours=1)
        )
        conf = await cp.stop_transaction(tx, 4000)
        assert conf is not None  # acknowledged by the gateway
        (row,) = await outbox_rows(harness, "cdr")
    assert row["state"] == "pending" and '"energy_kwh":3.0' in row["payload"]
    await emp.accept()
    await emp.wait_for(lambda: len(emp.cdrs) == 1)


async def test_statuses_produced_during_an_outage_arrive_as_the_newest_only(
    harness: Harness,
) -> None:
    emp = harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3)
    async with harness.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.status(1, "Available")
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Available")
        await emp.refuse()
        for ocpp, oioi in (("Preparing", "Occupied"), ("Reserved", "Reserved"),
                           ("Faulted", "Offline"), ("Charging", "Occupied")):  # fmt: skip
            await cp.status(1, ocpp)

            async def queued(oioi: str = oioi) -> bool:
                rows = await outbox_rows(harness, "evse-status")
                pending = [r for r in rows if r["key"] == EVSE and r["state"] == "pending"]
                return len(pending) == 1 and f'"status":"{oioi}"' in pending[0]["payload"]

            await until(queued)
        before = len(emp.requests)
        await emp.accept()
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Occupied")
        await asyncio.sleep(0.3)  # a few more ticks: nothing else may follow
    sent = [
        r.body["status"]
        for r in emp.requests[before:]
        if r.call == "connector-post-status" and r.body["connector-id"] == EVSE
    ]
    # Four changes, coalesced in the outbox: the newest arrives last. One older status may
    # precede it when a delivery attempt had already taken the row before the last change
    # and reached the EMP just as it came back (that row is then sent again, with the newest).
    assert sent[-1] == "Occupied"
    assert len(sent) <= 2, sent


async def test_outbox_cli_lists_retries_and_purges_dead_letters(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    emp.fail_call("station-post", 400, code=230, n=3)
    async with running(config) as gw:

        async def three_dead() -> bool:
            return len(await gw.store.list_outbox("dead")) == 3

        await until(three_dead)
        code, out, _ = await cli(config, "outbox", "list", "--dead")
        lines = out.splitlines()
        assert code == 0 and lines[-1] == "3 row(s)"
        assert all("\tdead\tsandbox\tstation\t" in line for line in lines[:3])
        assert "HTTP 400, code 230" in lines[0]
        first_id = lines[0].split("\t")[0]
        code, out, _ = await cli(config, "outbox", "purge", first_id)
        assert (code, out) == (0, "purged\n")
        code, out, _ = await cli(config, "outbox", "purge", "999999")
        assert (code, out) == (1, "no such row\n")
        code, _, err = await cli(config, "outbox", "retry")
        assert code == 64 and "--all-dead" in err
        code, out, _ = await cli(config, "outbox", "retry", "--all-dead")
        assert (code, out) == (0, "2 row(s) queued again\n")
        # The running gateway picks them up.
        await emp.wait_for(lambda: len(emp.stations) == 2)
        code, out, _ = await cli(config, "outbox", "list", "--dead")
        assert out == "0 row(s)\n"


async def test_due_rows_resume_within_5_s_of_a_restart(tmp_path: Path, emp: SandboxEmp) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    await emp.refuse()
    async with running(config) as first:

        async def attempted() -> bool:
            rows = await outbox_rows(first, "station")
            return len(rows) == 3 and all(r["attempts"] >= 1 for r in rows)

        await until(attempted)
    assert emp.stations == {}
    await emp.accept()
    async with running(config) as second:
        await emp.wait_for(lambda: len(emp.stations) == 3, timeout=5.0)

        async def all_delivered() -> bool:
            rows = await outbox_rows(second, "station")
            return [r["state"] for r in rows] == ["delivered"] * 3  # none queued twice

        await until(all_delivered)
