"""A 2.0.1 remote start is known to its charger by a stored remoteStartId (the session row's
remote ref), so a Started that names only that number binds to the EMP's pending start on
any connection and after a gateway restart: one session, the EMP's session id, its CDR.

The test charger accepts RequestStartTransaction without beginning it (Memory.auto_start
False); each test then sends the Started itself, with remoteStartId and no idToken, as
firmwares with AuthorizeRemoteStart=false do.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.cdr import CDR_KIND
from cpo_gateway.bridge.ports import SessionOrigin, SessionRecord, SessionState
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.store import Store
from tests.charger201 import Memory, Point, charger201, meter
from tests.conftest import Harness, running_gateway, write_config
from tests.storage import make_database

EVSE = "DE*CPO*E1001*2"  # CP-BER-001 connector 2: 2.0.1 EVSE 2, connector 1
EVCO = "DE-8PS-C12345-6"
CP = "CP-BER-001"


@asynccontextmanager
async def gateway_at(
    path: Path, emp: SandboxEmp, clock: Callable[[], float] = time.time
) -> AsyncIterator[Harness]:
    """A gateway on the config (and so the SQLite file) at `path`."""
    async with running_gateway(Gateway(load_config(path, {}), clock=clock), emp) as h:
        yield h


async def _remote_start(h: Harness, memory: Memory) -> tuple[str, int]:
    """Ask for a remote start on EVSE; (the EMP's session id, the remoteStartId sent)."""
    async with h.client() as client:
        status, body = await client.session_start(EVSE, EVCO)
    assert status == 200 and body["result"]["code"] == 0, body
    sent = [kw for action, kw in memory.commands if action == "RequestStartTransaction"]
    assert len(sent) == 1 and sent[0]["evse_id"] == 2, sent
    return body["session-start"]["session-id"], int(sent[0]["remote_start_id"])


async def _reconnect_quietly(cp: Point) -> None:
    """A charger back without booting: its first message is not a BootNotification."""
    await cp.call(call.Heartbeat(), suppress=False)


async def _started(cp: Point, tx_id: str, remote_start_id: int) -> Any:
    return await cp.event(
        "Started",
        tx_id,
        trigger="RemoteStart",
        evse=2,
        meter_value=meter(1000, 1),
        remote_start_id=remote_start_id,
    )


async def _ended(cp: Point, tx_id: str) -> Any:
    return await cp.event(
        "Ended",
        tx_id,
        trigger="StopAuthorized",
        evse=2,
        at=600,
        meter_value=meter(6000, 600),
        stopped_reason="Local",
    )


async def _session_of(store: Store, tx_id: str) -> SessionRecord:
    tx = await store.transaction_by_key(CP, tx_id)
    assert tx is not None, tx_id
    session = await store.session(tx.session_id)
    assert session is not None
    return session


async def _cdr_rows(store: Store) -> list[str]:
    """Session ids of every CDR queued, delivered or not."""
    rows = await store.db.all("SELECT key FROM outbox WHERE kind = ?", (CDR_KIND,))
    return [r["key"] for r in rows]


def _assert_billed_to_emp(emp: SandboxEmp, session_id: str) -> None:
    cdr = emp.cdrs[session_id]
    assert cdr["connector-id"] == EVSE
    assert cdr["user"] == {"identifier-type": "evco-id", "identifier": EVCO}
    assert cdr["energy-consumed"] == 5.0


async def test_started_after_a_reconnect_binds_by_remote_start_id(harness: Harness) -> None:
    memory = Memory(auto_start=False)
    async with charger201(harness.ocpp_url, CP, memory) as cp:
        await cp.status(2, "Available")
        session_id, ref = await _remote_start(harness, memory)
    # The connection that carried the command is gone; the driver plugs in later.
    async with charger201(harness.ocpp_url, CP, memory, boot=False) as cp:
        await _reconnect_quietly(cp)
        answer = await _started(cp, "TX-R1", ref)
        assert answer.id_token_info is None  # no idToken asked about
        session = await _session_of(harness.store, "TX-R1")
        assert (session.id, session.state, session.origin) == (
            session_id,
            SessionState.ACTIVE,
            SessionOrigin.REMOTE,
        )
        await _ended(cp, "TX-R1")
    await harness.emp.wait_for(lambda: session_id in harness.emp.cdrs, timeout=10)
    _assert_billed_to_emp(harness.emp, session_id)
    assert await _cdr_rows(harness.store) == [session_id]  # one session, one CDR


async def test_started_after_a_gateway_restart_binds_by_remote_start_id(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    path = write_config(tmp_path, emp_url=emp.url)
    memory = Memory(auto_start=False)
    async with gateway_at(path, emp) as h, charger201(h.ocpp_url, CP, memory) as cp:
        await cp.status(2, "Available")
        session_id, ref = await _remote_start(h, memory)
    async with gateway_at(path, emp) as h:  # the same SQLite file
        async with charger201(h.ocpp_url, CP, memory, boot=False) as cp:
            await _reconnect_quietly(cp)
            await _started(cp, "TX-R2", ref)
            assert (await _session_of(h.store, "TX-R2")).id == session_id
            await _ended(cp, "TX-R2")
        await emp.wait_for(lambda: session_id in emp.cdrs, timeout=10)
        assert await _cdr_rows(h.store) == [session_id]
    _assert_billed_to_emp(emp, session_id)


async def test_unknown_remote_start_id_is_a_local_session(harness: Harness) -> None:
    memory = Memory(auto_start=False)
    async with charger201(harness.ocpp_url, CP, memory) as cp:
        await cp.status(2, "Available")
        session_id, ref = await _remote_start(harness, memory)
    async with charger201(harness.ocpp_url, CP, memory, boot=False) as cp:
        await _reconnect_quietly(cp)
        answer = await _started(cp, "TX-U1", ref + 1000)  # a number the gateway never sent
        assert answer.id_token_info is None
        local = await _session_of(harness.store, "TX-U1")
        assert local.id != session_id and local.origin is SessionOrigin.CARD
        assert local.emp is None
        await _ended(cp, "TX-U1")
        assert (await _session_of(harness.store, "TX-U1")).state is SessionState.FINISHED
    pending = await harness.store.session(session_id)
    assert pending is not None and pending.state is SessionState.PENDING  # still waiting
    assert await _cdr_rows(harness.store) == []  # nobody is billed for the local one


async def test_another_chargers_remote_start_id_is_not_bound(harness: Harness) -> None:
    memory = Memory(auto_start=False)
    async with charger201(harness.ocpp_url, CP, memory) as cp:
        await cp.status(2, "Available")
        session_id, ref = await _remote_start(harness, memory)
    async with charger201(harness.ocpp_url, "CP-HH-001", Memory()) as other:
        await other.event("Started", "TX-O1", trigger="RemoteStart", evse=1, remote_start_id=ref)
    tx = await harness.store.transaction_by_key("CP-HH-001", "TX-O1")
    assert tx is not None and tx.session_id != session_id
    pending = await harness.store.session(session_id)
    assert pending is not None and pending.state is SessionState.PENDING


async def test_failed_start_begun_after_a_restart_is_late_stopped_and_not_billed(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    path = write_config(tmp_path, emp_url=emp.url)
    memory = Memory(auto_start=False)
    async with gateway_at(path, emp) as h, charger201(h.ocpp_url, CP, memory) as cp:
        await cp.status(2, "Available")
        session_id, ref = await _remote_start(h, memory)
        async with h.client() as client:  # the EMP gives up before the driver plugs in
            status, body = await client.session_stop(EVSE, EVCO, session_id)
        assert status == 200 and body["result"]["code"] == 0, body
    async with gateway_at(path, emp) as h:
        async with charger201(h.ocpp_url, CP, memory, boot=False) as cp:
            await _reconnect_quietly(cp)
            await _started(cp, f"TX-{ref}", ref)  # the name its RequestStart answer gave
            late = await _session_of(h.store, f"TX-{ref}")
            assert late.origin is SessionOrigin.LATE and late.emp == "sandbox"
            assert late.id != session_id
            # Stopped by the gateway at once (its own task), ended by the charger.
            await emp.wait_for(memory.ended.is_set, timeout=15)
        assert ("RequestStopTransaction", {"transaction_id": f"TX-{ref}"}) in memory.commands
        failed = await h.store.session(session_id)
        assert failed is not None and failed.state is SessionState.FAILED
        assert (await _session_of(h.store, f"TX-{ref}")).state is SessionState.FINISHED
        assert await _cdr_rows(h.store) == []
    assert emp.cdrs == {}


async def test_expired_start_begun_later_is_not_bound_to_the_emps_session(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    """An expired pending start is forgotten, as for a Started carrying its idToken: the
    late begin is judged by the authorization chain (the sandbox does not know the tag)."""
    path = write_config(tmp_path, emp_url=emp.url)
    skew = [0.0]
    memory = Memory(auto_start=False)
    async with gateway_at(path, emp, lambda: time.time() + skew[0]) as h:
        async with charger201(h.ocpp_url, CP, memory) as cp:
            await cp.status(2, "Available")
            session_id, ref = await _remote_start(h, memory)
        skew[0] = 91.0  # past pending_start_timeout_s (90)
        assert await h.gateway.core.expire_pending_starts() == 1
        async with charger201(h.ocpp_url, CP, memory, boot=False) as cp:
            await _reconnect_quietly(cp)
            await _started(cp, "TX-E1", ref)
            begun = await _session_of(h.store, "TX-E1")
            assert begun.id != session_id and begun.emp is None
            await _ended(cp, "TX-E1")
        expired = await h.store.session(session_id)
        assert expired is not None and expired.state is SessionState.FAILED
        assert await _cdr_rows(h.store) == []


async def test_remote_refs_are_positive_unique_and_found_per_charger(tmp_path: Path) -> None:
    db = make_database(tmp_path / "gateway.db")
    await db.open()
    try:
        store = Store(db)

        def pending(n: int, cp: str, connector: int) -> SessionRecord:
            return SessionRecord(
                id=f"S-{n}",
                evse_id=f"E-{n}",
                charge_point=cp,
                connector=connector,
                emp="sandbox",
                origin=SessionOrigin.REMOTE,
                user_kind="evco-id",
                user_id=EVCO,
                id_tag=f"TAG{n}",
                auth_status="Accepted",
                auth_path="remote",
                state=SessionState.PENDING,
                created_at="2026-05-01T12:00:00Z",
                expires_at=1e10,
                transaction_id=None,
            )

        refs = [
            await store.claim_evse(pending(1, "CP-A", 1), [("CP-A", 1)]),
            await store.claim_evse(pending(2, "CP-A", 2), [("CP-A", 2)]),
            await store.claim_evse(pending(3, "CP-B", 1), [("CP-B", 1)]),
        ]
        assert all(r is not None and r > 0 for r in refs) and len(set(refs)) == 3
        assert await store.claim_evse(pending(4, "CP-A", 1), [("CP-A", 1)]) is None  # held
        a1, a2, b1 = refs
        assert a1 is not None and a2 is not None and b1 is not None
        assert await store.remote_start_tag("CP-A", a2) == "TAG2"
        assert await store.remote_start_tag("CP-B", b1) == "TAG3"
        assert await store.remote_start_tag("CP-B", a1) is None  # another charger's
    finally:
        await db.close()
