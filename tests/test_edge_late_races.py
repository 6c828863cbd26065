"""A remote start failed while the gateway still knows its idTag as pending (the failure was
written by another process, `cpo-gateway sessions close`, or committed just before the
charger's StartTransaction) is decided in the transaction that stores the start: the session
is a late one, answered Invalid and stopped, never billed as a running remote start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cpo_gateway import cli
from cpo_gateway.sim.charger.simulator import SimCharger
from tests.test_edge_late_start import EVCO, EVSE, _finished, _remote_stops, _setup, _until


async def test_a_start_after_the_pending_start_was_closed_elsewhere_is_late(
    tmp_path: Path,
) -> None:
    async with (
        _setup(tmp_path, deadline_s=6.0) as setup,
        SimCharger("CP-BER-001", setup.ocpp_url, call_timeout=10, remote_start="ignore") as cp,
        setup.client() as client,
    ):
        await cp.connect()
        await cp.status(1, "Available")
        asking = asyncio.create_task(client.session_start(EVSE, EVCO))
        await _until(lambda: any(a == "RemoteStartTransaction" for a, _ in cp.received), "ask")
        row = await setup.gateway.db.one("SELECT id, id_tag FROM sessions WHERE state = 'pending'")
        assert row is not None
        argv = ["sessions", "close", row["id"], "--reason", "drivers left", "-c", str(setup.config)]
        assert await asyncio.to_thread(cli.main, argv) == 0  # another process fails it
        # The charger begins it all the same, while the gateway still holds its idTag.
        tx = await cp.start_transaction(1, row["id_tag"], meter_start=1000)
        answer = [p for a, p in cp.answers if a == "StartTransaction"][-1]
        assert answer["idTagInfo"]["status"] == "Invalid"
        await _until(lambda: tx in _remote_stops(cp), "a RemoteStopTransaction")
        session = await _finished(setup, tx)
        assert (session["origin"], session["emp"]) == ("late", "sandbox")
        posts = await setup.gateway.db.scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'cdr'")
        assert posts == 0 and not setup.emp.cdrs
        _, body = await asking
        assert body["result"]["code"] == 312
