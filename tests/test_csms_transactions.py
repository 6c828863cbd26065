"""Transactions are never lost or doubled: durable ids, replays, retried and orphan stops,
timestamps as sent, and a gateway killed mid-transaction."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from tests.conftest import INBOUND_KEY, PARTNER, ROOT, Harness, write_config
from tests.test_csms_support import CP, RawCharger, config, running

TAG = "04A2B3C4"


@pytest.fixture
async def h(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[Harness]:
    async with running(config(tmp_path, emp), emp) as harness:
        yield harness


async def count(h: Harness, sql: str, *params: object) -> int:
    row = await h.store.db.one(sql, params)
    assert row is not None
    return int(row[0])


async def whitelist(oioi_url: str, *tags: str) -> None:
    async with EmpClient(oioi_url, INBOUND_KEY) as client:
        status, body = await client.rfid_post(PARTNER, list(tags))
        assert status == 200 and body["result"]["code"] == 0, body


async def test_transaction_ids_are_durable_and_monotonic_across_restarts(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    cfg = config(tmp_path, emp)
    ids: list[int] = []
    for connector in (1, 2, 1):
        async with running(cfg, emp) as h, RawCharger.open(h.ocpp_url) as raw:
            answer = await raw.call(
                "StartTransaction",
                {"connectorId": connector, "idTag": TAG, "meterStart": 0,
                 "timestamp": f"2024-05-0{len(ids) + 1}T10:00:00Z"},
            )  # fmt: skip
            ids.append(answer[2]["transactionId"])
    assert ids == sorted(set(ids)) and ids[0] > 0


async def test_replayed_start_gets_the_same_transaction(h: Harness) -> None:
    async with h.charger(CP) as cp:
        await cp.connect()
        tx = await cp.start_transaction(1, TAG, meter_start=100)
        assert tx > 0
        again = await cp.replay_last(same_id=True)
        fresh_id = await cp.replay_last(same_id=False)
        assert again[0]["transactionId"] == fresh_id[0]["transactionId"] == tx
    assert await count(h, "SELECT COUNT(*) FROM transactions") == 1
    assert await count(h, "SELECT COUNT(*) FROM sessions") == 1


def without_expiry(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**a, "idTagInfo": {k: v for k, v in a["idTagInfo"].items() if k != "expiryDate"}}
        for a in answers
    ]


async def test_retried_stop_stops_once(h: Harness) -> None:
    await whitelist(h.oioi_url, TAG)
    async with h.charger(CP) as cp:
        await cp.connect()
        tx = await cp.start_transaction(
            1, TAG, meter_start=1000, timestamp=datetime.now(UTC) - timedelta(hours=1)
        )
        await cp.stop_transaction(tx, 5000, id_tag=TAG)
        first = cp.answers[-1][1]
        again = await cp.replay_last(same_id=True)
        fresh_id = await cp.replay_last(same_id=False)
        # The same answer, but for idTagInfo.expiryDate, which counts from each answer's second.
        assert without_expiry(again) == without_expiry(fresh_id) == without_expiry([first])
        assert first["idTagInfo"]["status"] == "Accepted"
    assert await count(h, "SELECT COUNT(*) FROM transactions") == 1
    assert await count(h, "SELECT COUNT(*) FROM outbox WHERE kind = 'cdr'") == 1
    row = await h.store.db.one("SELECT session_id, meter_stop_wh FROM transactions")
    assert row is not None and row["meter_stop_wh"] == 5000
    session_id = row["session_id"]
    await h.emp.wait_for(lambda: session_id in h.emp.cdrs, timeout=10)
    assert h.emp.cdrs[session_id]["energy-consumed"] == 4.0


@pytest.mark.parametrize("tx_id", [987654, -1, 0])
async def test_stop_for_an_unknown_transaction_becomes_an_orphan_session(
    h: Harness, tx_id: int
) -> None:
    await whitelist(h.oioi_url, TAG)
    async with RawCharger.open(h.ocpp_url) as raw:
        # Recent: a stop from long ago is held for review (bridge/cdr.review).
        recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        stop = {"transactionId": tx_id, "meterStop": 3000, "timestamp": recent, "idTag": TAG}
        answer = await raw.call("StopTransaction", stop)
        assert answer[0] == 3 and answer[2]["idTagInfo"]["status"] == "Accepted"
        assert (await raw.call("StopTransaction", stop))[0] == 3  # a retry: no second session
        # Nobody authorized this one: acknowledged and kept locally, no CDR.
        local = {"transactionId": tx_id, "meterStop": 10, "timestamp": "2024-05-02T00:00:00Z"}
        assert (await raw.call("StopTransaction", local))[2] == {}
    rows = await h.store.db.all("SELECT id, origin, emp, state FROM sessions ORDER BY emp IS NULL")
    assert [tuple(r)[1:] for r in rows] == [
        ("orphan", "sandbox", "finished"),
        ("orphan", None, "finished"),
    ]
    cdr_session = rows[0]["id"]
    queued = await h.store.db.all("SELECT key FROM outbox WHERE kind = 'cdr'")
    assert [r["key"] for r in queued] == [cdr_session]
    await h.emp.wait_for(lambda: cdr_session in h.emp.cdrs, timeout=10)
    assert h.emp.cdrs[cdr_session]["user"]["identifier"] == TAG


async def test_offline_timestamps_are_kept_exactly_as_sent(h: Harness) -> None:
    started = "2023-12-31T23:59:58.123+01:00"
    stopped = "2024-01-01T01:02:03Z"
    async with RawCharger.open(h.ocpp_url) as raw:
        answer = await raw.call(
            "StartTransaction",
            {"connectorId": 2, "idTag": TAG, "meterStart": 7, "timestamp": started},
        )
        tx = answer[2]["transactionId"]
        stop = {"transactionId": tx, "meterStop": 70, "timestamp": stopped}
        assert (await raw.call("StopTransaction", stop))[0] == 3
    row = await h.store.db.one(
        "SELECT started_at, stopped_at FROM transactions WHERE id = ?", (tx,)
    )
    assert row is not None and tuple(row) == (started, stopped)


# --- a gateway killed mid-transaction ----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """`python -m cpo_gateway run` in a child process, logging JSON lines to a file."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> dict[str, object]:
        """Start and wait for gateway.ready; returns that log event."""
        seen = self.log_path.read_text().count("\n") if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cpo_gateway", "run", "-c", str(self.config_path),
                stdout=log, stderr=log, cwd=ROOT,
            )  # fmt: skip
        async with asyncio.timeout(30):
            while True:
                for line in self.log_path.read_text().splitlines()[seen:]:
                    if '"gateway.ready"' in line:
                        return dict(json.loads(line))
                assert self.proc.returncode is None, self.log_path.read_text()
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown code runs
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(20):
                    await self.proc.wait()
            except TimeoutError:
                await self.kill()


@pytest.mark.sqlite_only(reason="reads what the killed gateway committed from its SQLite file")
@pytest.mark.slow
async def test_killed_gateway_loses_nothing(tmp_path: Path, emp: SandboxEmp) -> None:
    port = free_port()
    path = write_config(tmp_path, emp_url=emp.url)
    text = path.read_text().replace(
        '[ocpp]\nhost = "127.0.0.1"\nport = 0', f'[ocpp]\nhost = "127.0.0.1"\nport = {port}'
    )
    assert f"port = {port}" in text
    path.write_text(text)
    gateway = GatewayProcess(path, tmp_path / "gateway.log")
    url = f"ws://127.0.0.1:{port}/ocpp"
    try:
        ready = await gateway.start()
        await whitelist(f"http://127.0.0.1:{ready['oioi_port']}/api/v4/request", TAG)
        async with SimCharger(CP, url, call_timeout=10) as cp:
            await cp.connect()
            tx = await cp.start_transaction(
                1, TAG, meter_start=1000, timestamp=datetime.now(UTC) - timedelta(hours=1)
            )
            assert tx > 0  # answered, so committed
            await cp.meter_values(1, tx, 2500)
            await gateway.kill()
            await emp.wait_for(lambda: not cp.connected, timeout=10)
            assert await cp.stop_transaction(tx, 6000, id_tag=TAG) is None  # queued
            assert cp.pending_actions == ["StopTransaction"]
            await gateway.start()
            await cp.connect(boot=False)
            assert cp.pending == 0 and cp.call_errors == []
        with contextlib.closing(sqlite3.connect(tmp_path / "state" / "gateway.db")) as db:
            rows = db.execute(
                "SELECT t.id, t.session_id, s.origin, s.state FROM transactions t "
                "JOIN sessions s ON s.id = t.session_id"
            ).fetchall()
        assert len(rows) == 1
        tx_id, session_id, origin, state = rows[0]
        assert (tx_id, origin, state) == (tx, "card", "finished")
        await emp.wait_for(lambda: session_id in emp.cdrs, timeout=15)
        assert emp.cdrs[session_id]["energy-consumed"] == 5.0
    finally:
        await gateway.stop()
