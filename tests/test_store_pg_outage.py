"""PostgreSQL going away under a running gateway: what was acknowledged stays, what came
while it was away is refused (so the charger sends it again), and everything recovers when
it is back, without a restart of the gateway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.bench.pg_server import PgServer
from cpo_gateway.config import load_config
from cpo_gateway.config_storage import STORAGE_URL_ENV
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.store import PostgresDatabase
from tests.conftest import PARTNER, running_gateway, write_config

TAG = "04A2B3C4D5E6F7"


async def test_a_write_after_a_restart_fails_once_then_the_writer_reconnects(
    postgres: PgServer, pg_url: str
) -> None:
    db = PostgresDatabase(pg_url, connect_timeout_s=5)
    await db.open()
    try:
        await db.write("INSERT INTO meta (key, value) VALUES (?, ?)", ("before", "1"))
        await asyncio.to_thread(postgres.restart)
        outcomes: list[str] = []
        for i in range(50):  # bounded: the server is back at once
            try:
                await db.write("INSERT INTO meta (key, value) VALUES (?, ?)", (f"after{i}", "1"))
            except Exception as exc:  # noqa: BLE001 - which error is what the test reads
                outcomes.append(type(exc).__name__)
                await asyncio.sleep(0.1)
                continue
            outcomes.append("ok")
            break
        assert outcomes[-1] == "ok", outcomes
        assert all(o != "ok" for o in outcomes[:-1])
        assert db.write_failure is None  # the failure was reported and is over
        keys = {str(r[0]) for r in await db.all("SELECT key FROM meta")}
        assert "before" in keys and f"after{len(outcomes) - 1}" in keys
        # The refused writes left nothing behind.
        assert len([k for k in keys if k.startswith("after")]) == 1
    finally:
        await db.close()


async def test_postgresql_killed_during_a_transaction_loses_nothing_and_bills_once(
    tmp_path: Path,
    postgres: PgServer,
    pg_url: str,
    emp: SandboxEmp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(STORAGE_URL_ENV, pg_url)
    cfg = load_config(write_config(tmp_path, emp_url=emp.url), {})
    assert cfg.storage.backend == "postgresql"
    async with running_gateway(Gateway(cfg), emp) as h:
        await emp.wait_for(lambda: len(emp.stations) == 3, timeout=20)
        async with h.client() as client:
            status, body = await client.rfid_post(PARTNER, [TAG])
            assert status == 200 and body["result"]["code"] == 0, body
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            await cp.status(1, "Available")
            await asyncio.to_thread(postgres.kill)
            hour_ago = datetime.now(UTC) - timedelta(hours=1)
            placeholder = await cp.start_transaction(1, TAG, meter_start=1000, timestamp=hour_ago)
            # No commit, no answer: the charger got a CallError and keeps the message.
            assert placeholder < 0
            assert cp.pending_actions == ["StartTransaction"]
            await asyncio.to_thread(postgres.start)
            for _ in range(100):  # bounded: until the gateway takes it
                if await cp.retry_unanswered(1) == 0:
                    break
                await asyncio.sleep(0.2)
            tx_id = cp.transaction_id(1)
            assert tx_id is not None and tx_id > 0
            await cp.meter_values(1, tx_id, 4000, timestamp=hour_ago + timedelta(minutes=30))
            await cp.stop_transaction(tx_id, 6000)
            assert cp.pending == 0
        await emp.wait_for(lambda: len(emp.cdrs) == 1, timeout=30)
        (cdr,) = emp.cdrs.values()
        assert cdr["energy-consumed"] == pytest.approx(5.0)
        rows = await h.store.db.all("SELECT id FROM transactions")
        assert len(rows) == 1  # the refused start was not half stored
