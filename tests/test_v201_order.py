"""A 2.0.1 Ended that arrives before its Started: its CDR is held ("waiting for earlier events
of the transaction") while it lacks who charged and where, and the late Started fills in the
idTag, the EVSE, the start time and the first reading and releases exactly one CDR, across
reconnects, retries and a restart of the gateway. Always a real gateway, a real SQLite file
and an `ocpp` v201 charger."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.cdr import CDR_KIND
from cpo_gateway.bridge.late_reports import WAITING_DETAIL
from cpo_gateway.bridge.model import EnergySample, LateReport
from cpo_gateway.bridge.ports import SessionRecord, SessionState
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.charger201 import Memory, charger201, meter, stamp
from tests.conftest import PARTNER, Harness, running_gateway, write_config
from tests.test_oioi_whitelist import cli

CP = "CP-BER-001"
EVSE2 = "DE*CPO*E1001*2"
UID = "04A1B2C3D4E5F6"
TOKEN = (UID, "ISO14443")


async def _whitelist(h: Harness) -> None:
    async with h.client() as client:
        status, body = await client.rfid_post(PARTNER, [UID])
    assert status == 200 and body["result"]["code"] == 0, body


async def _cdr_rows(h: Harness) -> list[dict[str, Any]]:
    rows = await h.store.db.all("SELECT * FROM outbox WHERE kind = ? ORDER BY id", (CDR_KIND,))
    return [dict(r) for r in rows]


async def _session_of(h: Harness, key: str) -> SessionRecord:
    tx = await h.store.transaction_by_key(CP, key)
    assert tx is not None
    session = await h.store.session(tx.session_id)
    assert session is not None
    return session


async def _one_cdr(h: Harness, key: str) -> dict[str, Any]:
    """The one CDR the EMP holds for the transaction `key`, after exactly one outbox row."""
    session = await _session_of(h, key)
    await h.emp.wait_for(lambda: session.id in h.emp.cdrs, timeout=10)
    rows = await _cdr_rows(h)
    assert [r["key"] for r in rows] == [session.id], rows
    assert list(h.emp.cdrs) == [session.id]
    return h.emp.cdrs[session.id]


async def _ended(cp: Any, key: str, seq: int, wh: float, at: float, **kw: Any) -> Any:
    """An Ended without idToken or EVSE (what most chargers send): it cannot be billed alone."""
    return await cp.event(
        "Ended", key, seq=seq, trigger="StopAuthorized", at=at, evse=kw.pop("evse", None),
        meter_value=meter(wh, at), stopped_reason="Local", **kw,
    )  # fmt: skip


async def _started(cp: Any, key: str, wh: float, **kw: Any) -> Any:
    return await cp.event(
        "Started", key, seq=0, at=5, evse=2, token=kw.pop("token", TOKEN),
        meter_value=meter(wh, 5), **kw,
    )  # fmt: skip


async def test_ended_then_started_releases_one_cdr_with_the_starts_evse_and_reading(
    harness: Harness,
) -> None:
    h = harness
    await _whitelist(h)
    async with charger201(h.ocpp_url, CP, Memory()) as cp:
        await _ended(cp, "ES-1", 1, 14_500, 900)
        held = await _session_of(h, "ES-1")
        rows_while_held = await _cdr_rows(h)
        answer = await _started(cp, "ES-1", 12_000)
        cdr = await _one_cdr(h, "ES-1")
    assert (held.state, held.detail) == (SessionState.NEEDS_REVIEW, WAITING_DETAIL)
    assert rows_while_held == []
    assert answer.id_token_info is not None and answer.id_token_info["status"] == "Accepted"
    assert cdr["connector-id"] == EVSE2
    assert cdr["energy-consumed"] == 2.5  # 12,000 Wh at the Started to 14,500 Wh at the Ended
    assert cdr["user"] == {"identifier-type": "rfid", "identifier": UID}
    assert cdr["partner-identifier"] == PARTNER
    assert cdr["session-interval"]["start"] == stamp(5).replace("Z", "+00:00")
    tx = await h.store.transaction_by_key(CP, "ES-1")
    assert tx is not None and (tx.connector, tx.meter_start_wh, tx.id_tag) == (2, 12_000, UID)
    session = await _session_of(h, "ES-1")
    assert (session.state, session.evse_id, session.emp) == (
        SessionState.FINISHED,
        EVSE2,
        "sandbox",
    )


async def test_ended_updated_started_across_a_reconnect_keep_seq_no_order(
    harness: Harness,
) -> None:
    h = harness
    await _whitelist(h)
    memory = Memory()
    async with charger201(h.ocpp_url, CP, memory) as cp:
        await _ended(cp, "EUS-1", 2, 23_000, 1200, offline=True)
    async with charger201(h.ocpp_url, CP, memory, boot=False) as cp:
        # The Updated's reading was taken before the Started's arrived, not before its own.
        await cp.event(
            "Updated", "EUS-1", seq=1, trigger="MeterValuePeriodic", at=600, offline=True,
            evse=None, meter_value=meter(21_000, 600),
        )  # fmt: skip
        after_update = await _session_of(h, "EUS-1")
        rows_after_update = await _cdr_rows(h)
        await _started(cp, "EUS-1", 20_000, offline=True)
        cdr = await _one_cdr(h, "EUS-1")
    assert (after_update.state, after_update.detail) == (SessionState.NEEDS_REVIEW, WAITING_DETAIL)
    assert rows_after_update == []
    assert cdr["connector-id"] == EVSE2
    assert cdr["energy-consumed"] == 3.0  # the Started's 20,000 Wh to the Ended's 23,000 Wh
    steps = await h.store.steps_of(CP, "EUS-1")
    assert [(s.sequence, s.kind.value) for s in steps] == [
        (0, "started"), (1, "updated"), (2, "ended"),
    ]  # fmt: skip
    tx = await h.store.transaction_by_key(CP, "EUS-1")
    assert tx is not None and (tx.started_at, tx.stopped_at) == (stamp(5), stamp(1200))


async def test_an_ended_retried_then_its_started_retried_is_one_record_and_one_cdr(
    harness: Harness,
) -> None:
    h = harness
    await _whitelist(h)
    async with charger201(h.ocpp_url, CP, Memory()) as cp:
        for _ in range(2):  # the answer was lost: the same Ended again
            await _ended(cp, "RT-1", 3, 9_000, 900)
        first = await _started(cp, "RT-1", 7_250)
        again = await _started(cp, "RT-1", 7_250)
        cdr = await _one_cdr(h, "RT-1")
    assert cdr["energy-consumed"] == 1.75 and cdr["connector-id"] == EVSE2
    assert first.id_token_info["status"] == again.id_token_info["status"] == "Accepted"
    sessions = [s for s in await h.store.list_sessions() if s.charge_point == CP]
    assert len(sessions) == 1
    txs = await h.store.db.all("SELECT id FROM transactions WHERE charger_key = 'RT-1'")
    assert len(txs) == 1
    steps = await h.store.steps_of(CP, "RT-1")
    assert [s.sequence for s in steps] == [0, 3]


async def test_a_started_without_id_token_waits_for_the_updated_that_names_the_card(
    harness: Harness,
) -> None:
    h = harness
    await _whitelist(h)
    async with charger201(h.ocpp_url, CP, Memory()) as cp:
        await _ended(cp, "CARD-LATE", 2, 5_000, 900)
        # Plugged in first (CablePluggedIn): the Started places it but names no one.
        await cp.event(
            "Started", "CARD-LATE", seq=0, at=5, evse=2, trigger="CablePluggedIn",
            meter_value=meter(4_000, 5),
        )  # fmt: skip
        after_start = await _session_of(h, "CARD-LATE")
        rows_after_start = await _cdr_rows(h)
        named = await cp.event(
            "Updated", "CARD-LATE", seq=1, at=30, evse=None, token=TOKEN, trigger="Authorized"
        )
        cdr = await _one_cdr(h, "CARD-LATE")
    assert (after_start.state, after_start.evse_id) == (SessionState.NEEDS_REVIEW, EVSE2)
    assert rows_after_start == []
    assert named.id_token_info["status"] == "Accepted"
    assert cdr["energy-consumed"] == 1.0 and cdr["user"]["identifier"] == UID


async def test_a_started_that_never_comes_leaves_the_session_held_for_review(
    harness: Harness,
) -> None:
    h = harness
    await _whitelist(h)
    async with charger201(h.ocpp_url, CP, Memory()) as cp:
        await _ended(cp, "LOST-START", 4, 6_000, 900)
        await cp.event(
            "Updated", "LOST-START", seq=2, trigger="MeterValuePeriodic", at=400, evse=None,
            meter_value=meter(5_500, 400),
        )  # fmt: skip
        # A card but no EVSE: who charged is known, where is not.
        await _ended(cp, "NO-EVSE", 2, 6_000, 900, token=TOKEN)
    held = {s.id: s for s in await h.store.list_sessions(10, "needs_review")}
    lost, no_evse = await _session_of(h, "LOST-START"), await _session_of(h, "NO-EVSE")
    assert set(held) == {lost.id, no_evse.id}
    assert lost.detail == no_evse.detail == WAITING_DETAIL
    assert await _cdr_rows(h) == []

    config = h.gateway.config.path
    code, out, err = await cli(config, "sessions", "review")
    assert code == 0, err
    assert lost.id in out and WAITING_DETAIL in out and "2 session(s) need review" in out
    # Released by hand it would bill no one, or the wrong EVSE: refused, and said why.
    code, out, err = await cli(config, "sessions", "release", lost.id)
    assert code == 1 and "no EMP is known" in err, (out, err)
    code, out, err = await cli(config, "sessions", "release", no_evse.id)
    assert code == 1 and "EVSE that served it is not known" in err, (out, err)
    code, out, err = await cli(config, "sessions", "correct", no_evse.id, "--kwh", "1.0")
    assert code == 1 and "EVSE that served it is not known" in err, (out, err)
    assert await _cdr_rows(h) == []
    assert len(await h.store.list_sessions(10, "needs_review")) == 2


async def test_two_late_starts_at_once_release_the_cdr_once(harness: Harness) -> None:
    h = harness
    await _whitelist(h)
    async with charger201(h.ocpp_url, CP, Memory()) as cp:
        await _ended(cp, "RACE-1", 2, 3_000, 900)
    report = LateReport(
        CP, "RACE-1", 2, UID, stamp(5), started=True, samples=(EnergySample(stamp(5), 1_000.0),)
    )
    core = h.gateway.core
    decisions = await asyncio.gather(*(core.late_report(report) for _ in range(4)))
    assert all(d is not None and d.status.value == "Accepted" for d in decisions)
    cdr = await _one_cdr(h, "RACE-1")
    assert cdr["energy-consumed"] == 2.0


async def test_a_restart_between_the_ended_and_the_late_started_releases_one_cdr(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    cfg = load_config(write_config(tmp_path, emp_url=emp.url), {})
    memory = Memory()
    async with running_gateway(Gateway(cfg), emp) as h:
        await _whitelist(h)
        async with charger201(h.ocpp_url, CP, memory) as cp:
            await _ended(cp, "CRASH-1", 2, 8_000, 900)
        assert await _cdr_rows(h) == []
    again = Gateway(cfg)  # a new process on the same database file
    async with running_gateway(again, emp) as h, charger201(h.ocpp_url, CP, memory) as cp:
        await _started(cp, "CRASH-1", 6_500)
        await _started(cp, "CRASH-1", 6_500)  # resent after the reconnect, too
        cdr = await _one_cdr(h, "CRASH-1")
    assert cdr["energy-consumed"] == 1.5 and cdr["connector-id"] == EVSE2


async def test_every_arrival_order_of_a_transactions_events_gives_the_same_cdr(
    harness: Harness,
) -> None:
    h = harness
    await _whitelist(h)
    events: dict[str, dict[str, Any]] = {
        "Started": {"seq": 0, "at": 5, "evse": 2, "token": TOKEN, "meter_value": meter(1_000, 5)},
        "Updated": {"seq": 1, "at": 300, "evse": None, "trigger": "MeterValuePeriodic",
                    "meter_value": meter(1_500, 300)},
        "Ended": {"seq": 2, "at": 900, "evse": None, "trigger": "StopAuthorized",
                  "meter_value": meter(3_000, 900), "stopped_reason": "Local"},
    }  # fmt: skip
    orders = list(itertools.permutations(events))
    async with charger201(h.ocpp_url, CP, Memory()) as cp:
        for n, order in enumerate(orders):
            for kind in order:
                for _ in range(2):  # each one resent, as after a lost answer
                    await cp.event(kind, f"PERM-{n}", **events[kind])
    sessions = {s.id: s for s in await h.store.list_sessions() if s.charge_point == CP}
    await h.emp.wait_for(lambda: set(sessions) <= set(h.emp.cdrs), timeout=10)
    rows = await _cdr_rows(h)
    assert sorted(r["key"] for r in rows) == sorted(sessions)  # one CDR per transaction
    got = {}
    for n, order in enumerate(orders):
        tx = await h.store.transaction_by_key(CP, f"PERM-{n}")
        assert tx is not None
        cdr = h.emp.cdrs[tx.session_id]
        got[order] = (cdr["connector-id"], cdr["energy-consumed"], cdr["user"]["identifier"])
    assert got == dict.fromkeys(orders, (EVSE2, 2.0, UID))


async def test_a_late_started_that_makes_the_cdr_implausible_leaves_it_for_ops(
    harness: Harness,
) -> None:
    h = harness
    await _whitelist(h)
    async with charger201(h.ocpp_url, CP, Memory()) as cp:
        await _ended(cp, "ABSURD-1", 1, 900_000, 900)
        await _started(cp, "ABSURD-1", 0)  # 900 kWh in 15 minutes on a 22 kW connector
    session = await _session_of(h, "ABSURD-1")
    assert session.state == SessionState.NEEDS_REVIEW
    assert session.detail is not None and "above" in session.detail
    assert (session.emp, session.evse_id) == ("sandbox", EVSE2)  # complete, but implausible
    assert await _cdr_rows(h) == []
    config = h.gateway.config.path
    code, out, err = await cli(config, "sessions", "correct", session.id, "--kwh", "4.5")
    assert code == 0, (out, err)
    cdr = await _one_cdr(h, "ABSURD-1")
    assert cdr["energy-consumed"] == 4.5 and cdr["connector-id"] == EVSE2
