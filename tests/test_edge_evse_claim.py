"""One open session per EVSE, whatever arrives at once: concurrent session-starts from two
partners over real HTTP reach the charger as exactly one RemoteStartTransaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from tests.conftest import write_config
from tests.storage import make_database

EVCO = ("DE-8PS-C12345-6", "DE*ABC*C65432*1", "DE-8PS-C77777-1", "DE*ABC*C11111*2")
KEYS = {"alpha": "in-alpha-key-000001", "beta": "in-beta-key-0000001"}


def _emps(alpha_url: str, beta_url: str) -> str:
    tables = []
    for name, url in (("alpha", alpha_url), ("beta", beta_url)):
        tables.append(f"""
            [[emp]]
            name = "{name}"
            url = "{url}"
            api_key = "out-{name}-key"
            inbound_api_key = "{KEYS[name]}"
            partner_identifier = "{name}-partner-identifier"
            online_authorization = false
            offline_policy = "reject"
        """)
    return "".join(tables)


@contextlib.asynccontextmanager
async def _gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with (
        SandboxEmp(api_key="out-alpha-key", verify_codes={}) as a,
        SandboxEmp(api_key="out-beta-key", verify_codes={}) as b,
    ):
        cfg = load_config(write_config(tmp_path, emps=_emps(a.url, b.url)), {})
        gateway = Gateway(cfg)
        await gateway.start()
        try:
            yield gateway
        finally:
            await gateway.stop()
        assert gateway.tasks.failures == 0


def _urls(gateway: Gateway) -> tuple[str, str]:
    assert gateway.csms is not None and gateway.oioi is not None
    return (
        f"ws://127.0.0.1:{gateway.csms.port}/ocpp",
        f"http://127.0.0.1:{gateway.oioi.port}/api/v4/request",
    )


@pytest.mark.parametrize(
    ("charge_point", "evse"),
    [("CP-BER-001", "DE*CPO*E1001*1"), ("CP-MUC-DC1", "DE*CPO*E2001")],  # E2001: two cables
)
async def test_concurrent_session_starts_claim_the_evse_once(
    tmp_path: Path, charge_point: str, evse: str
) -> None:
    async with _gateway(tmp_path) as gateway:
        ocpp_url, oioi_url = _urls(gateway)
        async with (
            SimCharger(charge_point, ocpp_url, call_timeout=10) as cp,
            EmpClient(oioi_url, KEYS["alpha"]) as alpha,
            EmpClient(oioi_url, KEYS["beta"]) as beta,
        ):
            await cp.connect()
            for connector in (1, 2):
                await cp.status(connector, "Available")
            answers = await asyncio.gather(
                *(
                    (alpha if i % 2 == 0 else beta).session_start(evse, evco)
                    for i, evco in enumerate(EVCO)
                )
            )
            codes = sorted(body["result"]["code"] for _, body in answers)
            assert codes == [0, 320, 320, 320], answers
            remote_starts = [p for action, p in cp.received if action == "RemoteStartTransaction"]
            assert len(remote_starts) == 1, remote_starts
        open_sessions = await gateway.db.scalar(
            "SELECT COUNT(*) FROM sessions WHERE state IN ('pending', 'active')"
        )
        assert open_sessions == 1


async def test_migration_leaves_one_open_remote_session_per_evse(tmp_path: Path) -> None:
    """A database that already holds two open remote starts on one EVSE still migrates: the
    older is failed with a detail, the newer keeps the EVSE."""
    import sqlite3

    from cpo_gateway.store.migrations import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.executescript(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL);"
        "INSERT INTO schema_version VALUES (1, 0);"
    )
    rows = [
        ("old", "pending", "2026-01-01T10:00:00Z"),
        ("new", "pending", "2026-01-01T10:00:01Z"),
        ("done", "finished", "2026-01-01T09:00:00Z"),
    ]
    for sid, state, at in rows:
        conn.execute(
            "INSERT INTO sessions (id, evse_id, charge_point, connector, emp, origin, state, "
            "created_at) VALUES (?, 'DE*CPO*E1001*1', 'CP-BER-001', 1, 'alpha', 'remote', ?, ?)",
            (sid, state, at),
        )
    # Another EVSE: a running transaction's session outranks a newer pending start.
    for sid, state, at in (("running", "active", "09:00"), ("stale", "pending", "10:00")):
        conn.execute(
            "INSERT INTO sessions (id, evse_id, charge_point, connector, emp, origin, state, "
            "created_at) VALUES (?, 'DE*CPO*E1001*2', 'CP-BER-001', 2, 'beta', 'remote', ?, ?)",
            (sid, state, f"2026-01-01T{at}:00Z"),
        )
    conn.commit()
    conn.close()
    db = make_database(path)
    assert await db.open() == len(MIGRATIONS)
    try:
        got = {r["id"]: (r["state"], r["detail"]) for r in await db.all("SELECT * FROM sessions")}
        assert got["new"] == ("pending", None)
        assert got["done"] == ("finished", None)
        assert got["old"][0] == "failed" and "another open session" in got["old"][1]
        assert got["running"] == ("active", None) and got["stale"][0] == "failed"
        with pytest.raises(sqlite3.IntegrityError):
            await db.write(
                "INSERT INTO sessions (id, evse_id, charge_point, connector, emp, origin, state, "
                "created_at) VALUES ('third', 'DE*CPO*E1001*1', 'CP-BER-001', 1, 'beta', "
                "'remote', 'pending', '2026-01-01T10:00:02Z')",
                (),
            )
    finally:
        await db.close()


async def test_charger_starts_are_stored_while_a_remote_start_holds_the_evse(
    tmp_path: Path,
) -> None:
    """The rule binds what the gateway starts, not what the charger reports: a card start on
    the other cable of a claimed EVSE, and a stop for a transaction never seen, are still
    acknowledged and stored."""
    async with _gateway(tmp_path) as gateway:
        ocpp_url, oioi_url = _urls(gateway)
        async with (
            SimCharger("CP-MUC-DC1", ocpp_url, call_timeout=10, remote_start="no-plug") as cp,
            EmpClient(oioi_url, KEYS["alpha"]) as alpha,
        ):
            await cp.connect()
            for connector in (1, 2):
                await cp.status(connector, "Available")
            _, body = await alpha.session_start("DE*CPO*E2001", EVCO[0])
            assert body["result"]["code"] == 0  # pending on cable 1
            tx = await cp.start_transaction(2, "AABBCCDD", meter_start=0)
            assert tx > 0
            assert await cp.stop_transaction(tx, 500) is not None
            assert await cp.stop_transaction(987654, 700) is not None  # never seen
            assert not cp.dropped and cp.pending == 0
        rows = await gateway.db.all("SELECT origin, state FROM sessions ORDER BY created_at")
        assert sorted(tuple(r) for r in rows) == [
            ("card", "finished"),
            ("orphan", "finished"),
            ("remote", "pending"),
        ]
