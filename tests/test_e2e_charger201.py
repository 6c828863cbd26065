"""The simulated OCPP 2.0.1 station against the real gateway, EMP to CDR: remote start and
stop through RequestStart/StopTransaction, a card session replayed after an outage, retried
and out-of-order TransactionEvents, an Ended without its Started, and a 1.6 charger beside it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from cpo_gateway.sim.charger201.commands import REPORT_ITEMS_PER_MESSAGE
from cpo_gateway.sim.charger201.simulator import SimCharger201
from tests.conftest import PARTNER, Harness

EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"
CARD = "04523022AA4881"


def station(h: Harness, cp_id: str = "CP-BER-001", **kwargs: Any) -> SimCharger201:
    return SimCharger201(cp_id, h.ocpp_url, call_timeout=10, **kwargs)


async def _whitelist(h: Harness, *uids: str) -> None:
    async with h.client() as client:
        status, body = await client.rfid_post(PARTNER, list(uids))
    assert status == 200 and body["result"]["code"] == 0, body


async def test_remote_session_from_the_emp_to_the_cdr(harness: Harness) -> None:
    emp = harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3, timeout=10)
    async with station(harness) as cs:
        await cs.connect()
        assert cs.boot_status == "Accepted"
        await cs.status(1, "Available")
        await cs.status(2, "Available")
        async with harness.client() as client:
            status, body = await client.session_start(EVSE, EVCO)
            assert status == 200 and body["result"]["code"] == 0, body
            session_id = body["session-start"]["session-id"]
            await emp.wait_for(lambda: cs.transaction_id(1) is not None, timeout=10)
            tx_id = cs.transaction_id(1)
            assert tx_id is not None
            (start,) = [p for a, p in cs.received if a == "RequestStartTransaction"]
            assert start["evseId"] == 1 and isinstance(start["remoteStartId"], int)
            await cs.meter_values(1, tx_id, 500)  # seconds of charging: plausible energy
            status, body = await client.session_stop(EVSE, EVCO, session_id)
            assert status == 200 and body["result"]["code"] == 0, body
        await emp.wait_for(lambda: session_id in emp.cdrs, timeout=10)
        (stop,) = [p for a, p in cs.received if a == "RequestStopTransaction"]
        assert stop == {"transactionId": tx_id}
    assert cs.invalid_answers == [] and cs.call_errors == []
    cdr = emp.cdrs[session_id]
    assert cdr["connector-id"] == EVSE
    assert cdr["user"] == {"identifier-type": "evco-id", "identifier": EVCO}
    assert cdr["energy-consumed"] == 0.5
    assert cdr["session-interval"]["stop"]


async def test_offline_card_session_keeps_its_times_and_retries_count_once(
    harness: Harness,
) -> None:
    emp = harness.emp
    await _whitelist(harness, CARD)
    async with station(harness) as cs:
        await cs.connect()
        assert await cs.authorize(CARD) == "Accepted"
        await cs.disconnect()
        began = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        tx = await cs.start_transaction(1, CARD, meter_start=1000, timestamp=began)
        await cs.meter_values(1, tx, 3000, timestamp=began + timedelta(minutes=20))
        await cs.stop_transaction(tx, 5000, timestamp=began + timedelta(minutes=40))
        assert cs.pending == 3
        await cs.connect(boot=False)
        assert cs.pending == 0
        again = await cs.replay_last(3, same_id=False)  # the whole transaction, retried
        assert len(again) == 3
        await emp.wait_for(lambda: len(emp.cdrs) == 1, timeout=10)
    assert cs.invalid_answers == [] and cs.call_errors == []
    (cdr,) = emp.cdrs.values()
    assert cdr["user"]["identifier"] == CARD
    assert cdr["energy-consumed"] == 4.0
    start = datetime.fromisoformat(cdr["session-interval"]["start"])
    stop = datetime.fromisoformat(cdr["session-interval"]["stop"])
    assert (start, stop) == (began, began + timedelta(minutes=40))


def _event(
    kind: str, tx: str, seq: int, readings: list[int], minute: int, **extra: Any
) -> dict[str, Any]:
    """A TransactionEvent built by hand at `minute` of a recent half hour, one energy register
    reading per meterValue, a minute apart."""
    stamp = _recent(minute)
    meter = [
        {"timestamp": _recent(minute + i), "sampledValue": [
            {"value": wh, "measurand": "Energy.Active.Import.Register",
             "unitOfMeasure": {"unit": "Wh"}}]}
        for i, wh in enumerate(readings)
    ]  # fmt: skip
    info: dict[str, Any] = {"transactionId": tx}
    if kind == "Ended":
        info["stoppedReason"] = "Local"
    return {"eventType": kind, "timestamp": stamp, "triggerReason": "Authorized", "seqNo": seq,
            "transactionInfo": info, "meterValue": meter, **extra}  # fmt: skip


BEGAN = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)


def _recent(minute: int) -> str:
    # Recent, and slow enough: a CDR from long ago or of implausible power is held for review.
    return (BEGAN + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")


TOKEN = {"idToken": CARD, "type": "ISO14443"}


async def test_updates_out_of_order_and_retried_count_once(harness: Harness) -> None:
    emp = harness.emp
    await _whitelist(harness, CARD)
    async with station(harness) as cs:
        await cs.connect()
        events = [
            _event("Started", "ORDER-1", 0, [100], 0, evse={"id": 2, "connectorId": 1},
                   idToken=TOKEN),
            _event("Updated", "ORDER-1", 2, [1500], 20),
            _event("Updated", "ORDER-1", 1, [1100], 10),
            _event("Updated", "ORDER-1", 1, [1100], 10),
            _event("Ended", "ORDER-1", 3, [2100], 30),
            _event("Ended", "ORDER-1", 3, [2100], 30),
        ]  # fmt: skip
        for payload in events:
            await cs.send_raw("TransactionEvent", payload)
        await emp.wait_for(lambda: len(emp.cdrs) == 1, timeout=10)
    assert cs.invalid_answers == [] and cs.call_errors == []
    (cdr,) = emp.cdrs.values()
    assert cdr["connector-id"] == "DE*CPO*E1001*2"
    assert cdr["energy-consumed"] == 2.0  # 100 Wh to 2,100 Wh
    assert cdr["user"] == {"identifier-type": "rfid", "identifier": CARD}


async def test_an_ended_without_its_started_becomes_a_cdr(harness: Harness) -> None:
    emp = harness.emp
    await _whitelist(harness, CARD)
    async with station(harness) as cs:
        await cs.connect()
        orphan = _event("Ended", "NEVER-STARTED", 5, [800, 1800], 0,
                        evse={"id": 1, "connectorId": 1}, idToken=TOKEN)  # fmt: skip
        answer = await cs.send_raw("TransactionEvent", orphan)
        assert answer["idTokenInfo"]["status"] == "Accepted"
        await emp.wait_for(lambda: len(emp.cdrs) == 1, timeout=10)
    (cdr,) = emp.cdrs.values()
    assert cdr["connector-id"] == EVSE
    assert cdr["user"]["identifier"] == CARD
    assert cdr["energy-consumed"] == 1.0


async def test_an_ended_before_its_started_is_kept_in_seq_no_order(harness: Harness) -> None:
    emp = harness.emp
    await _whitelist(harness, CARD)
    async with station(harness) as cs:
        await cs.connect()
        events = [
            _event("Ended", "ORDER-2", 2, [2100], 30),
            _event("Updated", "ORDER-2", 1, [1100], 10),
            _event("Started", "ORDER-2", 0, [100], 0, evse={"id": 2, "connectorId": 1},
                   idToken=TOKEN),
        ]  # fmt: skip
        for payload in events:
            await cs.send_raw("TransactionEvent", payload)
        await emp.wait_for(lambda: len(emp.cdrs) == 1, timeout=5)
    (cdr,) = emp.cdrs.values()
    assert cdr["connector-id"] == "DE*CPO*E1001*2"
    assert cdr["energy-consumed"] == 2.0


async def test_a_1_6_and_a_2_0_1_charger_side_by_side(harness: Harness) -> None:
    emp = harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3, timeout=10)
    async with harness.charger("CP-MUC-DC1") as old, station(harness) as new:
        await old.connect()
        await new.connect()
        await old.status(1, "Available")
        await new.status(1, "Available")
        async with harness.client() as client:
            first = await client.session_start("DE*CPO*E2001", EVCO)
            second = await client.session_start(EVSE, EVCO)
        assert first[1]["result"]["code"] == 0 and second[1]["result"]["code"] == 0
        await emp.wait_for(lambda: old.transaction_id(1) is not None, timeout=10)
        await emp.wait_for(lambda: new.transaction_id(1) is not None, timeout=10)
        both = ("DE*CPO*E2001", EVSE)
        await emp.wait_for(lambda: all(emp.statuses.get(e) == "Occupied" for e in both), 10)
    assert [a for a, _ in old.received].count("RemoteStartTransaction") == 1
    assert [a for a, _ in new.received].count("RequestStartTransaction") == 1


async def test_the_whitelist_reaches_the_station_in_chunks_of_its_items_per_message(
    harness: Harness,
) -> None:
    uids = [f"{0xA0000000 + i:08X}" for i in range(120)]
    async with station(harness, local_list_max_length=50) as cs:
        await cs.connect()
        await _whitelist(harness, *uids)
        await harness.emp.wait_for(lambda: len(cs.local_list) == 120, timeout=10)
        await cs.disconnect()
        assert cs.authorize_locally(uids[-1])  # the station decides alone while cut off
    pushes = [p for a, p in cs.received if a == "SendLocalList"]
    assert [(p["updateType"], len(p["localAuthorizationList"])) for p in pushes] == [
        ("Full", 50), ("Differential", 50), ("Differential", 20)
    ]  # fmt: skip
    assert cs.local_list_version == pushes[-1]["versionNumber"]
    (read,) = [p for a, p in cs.received if a == "GetVariables"]
    asked = {(v["component"]["name"], v["variable"]["name"]) for v in read["getVariableData"]}
    assert ("LocalAuthListCtrlr", "ItemsPerMessage") in asked


async def test_a_reconnect_asks_for_the_open_transactions_status(harness: Harness) -> None:
    async with station(harness) as cs:
        await cs.connect()
        tx = await cs.start_transaction(1, CARD, meter_start=10)
        await cs.disconnect()
        await cs.meter_values(1, tx, 500)
        await cs.connect(boot=False)
        await harness.emp.wait_for(
            lambda: any(a == "GetTransactionStatus" for a, _ in cs.received), timeout=10
        )
    asked = [p for a, p in cs.received if a == "GetTransactionStatus"]
    assert asked == [{"transactionId": tx}]
    assert cs.pending == 0


async def test_the_gateways_commands_reach_the_station(harness: Harness) -> None:
    registry = harness.csms.registry
    cp = "CP-BER-001"
    async with station(harness) as cs:
        await cs.connect()
        read = await registry.get_variables(cp, [("OCPPCommCtrlr", "HeartbeatInterval")])
        assert read.accepted, read
        results = read.data["getVariableResult"]
        assert isinstance(results, list) and len(results) == 1
        assert results[0]["attributeValue"] == str(cs.heartbeat_interval)
        written = await registry.set_variables(cp, [("OCPPCommCtrlr", "HeartbeatInterval", "30")])
        assert written.accepted and cs.heartbeat_interval == 30, written
        report = await registry.get_base_report(cp, 9)
        assert report.accepted, report
        chunks = math.ceil(len(cs.state.variables) / REPORT_ITEMS_PER_MESSAGE)
        await harness.emp.wait_for(
            lambda: sum(1 for a, _ in cs.answers if a == "NotifyReport") == chunks, timeout=10
        )
        off = await registry.change_availability(cp, 2, "Inoperative")
        assert off.accepted and cs.availability == {2: "Inoperative"}, off
        await harness.emp.wait_for(
            lambda: harness.emp.statuses.get("DE*CPO*E1001*2") == "Offline", timeout=10
        )
        unlock = await registry.unlock_connector(cp, 1)
        assert unlock.accepted, unlock
        beats = sum(1 for a, _ in cs.answers if a == "Heartbeat")
        trigger = await registry.trigger_message(cp, "Heartbeat")
        assert trigger.accepted, trigger
        await harness.emp.wait_for(
            lambda: sum(1 for a, _ in cs.answers if a == "Heartbeat") == beats + 1, timeout=10
        )
        reset = await registry.reset(cp, "Hard")
        assert reset.accepted, reset
        await harness.emp.wait_for(lambda: cs.boots == 2 and cs.connected, timeout=10)
    assert cs.invalid_answers == [] and cs.call_errors == []
