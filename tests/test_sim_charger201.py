"""The simulated 2.0.1 station against a small OCPP 2.0.1 central system written here.

The central system is the `ocpp` library's v201 ChargePoint with `@on` handlers on a websockets
server on port 0, independent of the gateway: it validates what the station sends against the
OCA schemas, answers from memory and records every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from cpo_gateway.sim.charger.state import ocpp_timestamp
from cpo_gateway.sim.charger201.simulator import SimCharger201, SimChargerError
from cpo_gateway.sim.charger201.state import StationState
from tests.conftest import examples

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Frame:
    station_id: str
    action: str
    payload: dict[str, Any]


@dataclass
class Csms201:
    """Answers from memory; `fail` makes chosen actions answer a CallError once each."""

    accepted_tokens: set[str] = field(default_factory=lambda: {"AABBCCDD"})
    heartbeat_interval: int = 42
    frames: list[Frame] = field(default_factory=list)
    points: dict[str, CsmsPoint201] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    broken_heartbeat: bool = False
    server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ocpp"

    def actions(self) -> list[str]:
        return [f.action for f in self.frames]

    def of(self, action: str) -> list[dict[str, Any]]:
        return [f.payload for f in self.frames if f.action == action]

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        station_id = ws.request.path.rsplit("/", 1)[-1]
        point = CsmsPoint201(station_id, ws, self)
        self.points[station_id] = point
        with contextlib.suppress(ConnectionClosed):
            await point.start()


class CsmsPoint201(ChargePoint):
    def __init__(self, station_id: str, ws: ServerConnection, csms: Csms201) -> None:
        super().__init__(station_id, ws, 5)
        self.csms = csms

    async def route_message(self, raw_msg: str) -> None:
        message = json.loads(raw_msg)
        if message[0] == 2:
            self.csms.frames.append(Frame(self.id, message[2], message[3]))
        await super().route_message(raw_msg)

    @on(Action.boot_notification)
    def on_boot(self, charging_station: dict[str, Any], reason: str) -> Any:
        return call_result.BootNotification(
            current_time=ocpp_timestamp(NOW), interval=self.csms.heartbeat_interval,
            status="Accepted",
        )  # fmt: skip

    @on(Action.heartbeat, skip_schema_validation=True)
    def on_heartbeat(self) -> Any:
        if self.csms.broken_heartbeat:
            return call_result.Heartbeat(current_time=12345)
        return call_result.Heartbeat(current_time=ocpp_timestamp(NOW))

    @on(Action.status_notification)
    def on_status(self, **_: Any) -> Any:
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        known = id_token["id_token"] in self.csms.accepted_tokens
        return call_result.Authorize(id_token_info={"status": "Accepted" if known else "Invalid"})

    @on(Action.transaction_event)
    def on_transaction_event(self, **_: Any) -> Any:
        if self.csms.fail.get("TransactionEvent", 0) > 0:
            self.csms.fail["TransactionEvent"] -= 1
            raise InternalError(description="told to fail")
        return call_result.TransactionEvent()

    @on(Action.notify_report)
    def on_notify_report(self, **_: Any) -> Any:
        return call_result.NotifyReport()

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> Any:
        return call_result.MeterValues()


@pytest.fixture
async def csms() -> AsyncIterator[Csms201]:
    central = Csms201()
    async with serve(
        central.handler, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp2.0.1")]
    ) as server:
        central.server = server
        yield central


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def station(csms: Csms201, **kwargs: Any) -> SimCharger201:
    ids = iter(f"TX-{n}" for n in range(1, 1000))
    return SimCharger201("CS1", csms.url, clock=lambda: NOW, transaction_ids=lambda: next(ids),
                         **kwargs)  # fmt: skip


async def test_boot_heartbeat_and_statuses(csms: Csms201) -> None:
    async with station(csms, vendor="ACME") as cs:
        await cs.connect()
        answer = await cs.heartbeat()
        await cs.status(1, "Charging")
        await cs.status(2, "Available")
    assert cs.boot_status == "Accepted" and cs.heartbeat_interval == 42
    assert answer["currentTime"] == "2024-05-01T12:00:00.000Z"
    boot = csms.of("BootNotification")[0]
    assert boot["reason"] == "PowerUp" and boot["chargingStation"]["vendorName"] == "ACME"
    assert csms.of("StatusNotification") == [
        {"timestamp": "2024-05-01T12:00:00.000Z", "connectorStatus": "Occupied",
         "evseId": 1, "connectorId": 1},
        {"timestamp": "2024-05-01T12:00:00.000Z", "connectorStatus": "Available",
         "evseId": 2, "connectorId": 1},
    ]  # fmt: skip


async def test_authorize_with_token_types(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        assert await cs.authorize("AABBCCDD") == "Accepted"
        assert await cs.authorize("DE8PSC123456", "eMAID") == "Invalid"
    assert csms.of("Authorize") == [
        {"idToken": {"idToken": "AABBCCDD", "type": "ISO14443"}},
        {"idToken": {"idToken": "DE8PSC123456", "type": "eMAID"}},
    ]


async def test_transaction_events_carry_seq_no_and_the_energy_register(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        tx = await cs.start_transaction(1, "AABBCCDD", meter_start=1000)
        assert cs.transaction_id(1) == tx == "TX-1"
        await cs.meter_values(1, tx, 1500)
        await cs.stop_transaction(tx, 2000, id_tag="AABBCCDD")
        assert cs.transaction_id(1) is None
    started, updated, ended = csms.of("TransactionEvent")
    assert [e["eventType"] for e in (started, updated, ended)] == ["Started", "Updated", "Ended"]
    assert [e["seqNo"] for e in (started, updated, ended)] == [0, 1, 2]
    assert {e["transactionInfo"]["transactionId"] for e in (started, updated, ended)} == {"TX-1"}
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert started["idToken"] == {"idToken": "AABBCCDD", "type": "ISO14443"}
    assert started["triggerReason"] == "Authorized"
    energy = [
        s for e in (started, updated, ended) for m in e["meterValue"] for s in m["sampledValue"]
        if s["measurand"] == "Energy.Active.Import.Register"
    ]  # fmt: skip
    assert [(s["value"], s["context"]) for s in energy] == [
        (1000, "Transaction.Begin"), (1500, "Sample.Periodic"), (2000, "Transaction.End")
    ]  # fmt: skip
    assert all(s["unitOfMeasure"] == {"unit": "Wh"} for s in energy)
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["triggerReason"] == "StopAuthorized"
    assert all("offline" not in e for e in (started, updated, ended))


async def test_offline_events_replay_in_order_with_offline_and_their_times(
    csms: Csms201,
) -> None:
    async with station(csms) as cs:
        await cs.connect()
        await cs.disconnect()
        began = NOW - timedelta(hours=2)
        tx = await cs.start_transaction(1, "AABBCCDD", meter_start=10, timestamp=began)
        assert await cs.meter_values(1, tx, 500, timestamp=began + timedelta(minutes=30)) is None
        await cs.stop_transaction(tx, 900, timestamp=began + timedelta(hours=1))
        assert cs.pending == 3 and cs.queued_transaction_ids() == {tx}
        assert csms.of("TransactionEvent") == []
        await cs.connect(boot=False)
        assert cs.pending == 0
    events = csms.of("TransactionEvent")
    assert [(e["eventType"], e["seqNo"], e["offline"]) for e in events] == [
        ("Started", 0, True), ("Updated", 1, True), ("Ended", 2, True)
    ]  # fmt: skip
    assert [e["timestamp"] for e in events] == [
        "2024-05-01T10:00:00.000Z", "2024-05-01T10:30:00.000Z", "2024-05-01T11:00:00.000Z"
    ]  # fmt: skip


async def test_request_start_binds_remote_start_id_and_request_stop_ends(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        point = csms.points["CS1"]
        answer = await point.call(call.RequestStartTransaction(
            id_token={"id_token": "DE8PSC123456", "type": "eMAID"}, remote_start_id=77, evse_id=2,
        ))  # fmt: skip
        assert answer.status == "Accepted"
        await eventually(lambda: len(csms.of("TransactionEvent")) == 1, "Started")
        started = csms.of("TransactionEvent")[0]
        assert started["transactionInfo"]["remoteStartId"] == 77
        assert started["triggerReason"] == "RemoteStart"
        assert started["idToken"] == {"idToken": "DE8PSC123456", "type": "eMAID"}
        assert started["evse"] == {"id": 2, "connectorId": 1}
        busy = await point.call(call.RequestStartTransaction(
            id_token={"id_token": "X", "type": "Central"}, remote_start_id=78, evse_id=2,
        ))  # fmt: skip
        assert busy.status == "Rejected"
        tx = cs.transaction_id(2)
        assert tx is not None
        status = await point.call(call.GetTransactionStatus(transaction_id=tx))
        assert status.ongoing_indicator is True and status.messages_in_queue is False
        unknown = await point.call(call.RequestStopTransaction(transaction_id="nope"))
        assert unknown.status == "Rejected"
        stop = await point.call(call.RequestStopTransaction(transaction_id=tx))
        assert stop.status == "Accepted"
        await eventually(lambda: len(csms.of("TransactionEvent")) == 2, "Ended")
        ended = csms.of("TransactionEvent")[1]
        assert ended["transactionInfo"]["stoppedReason"] == "Remote"
        assert ended["triggerReason"] == "RemoteStop"
        after = await point.call(call.GetTransactionStatus(transaction_id=tx))
        assert after.ongoing_indicator is False
        await eventually(lambda: csms.of("StatusNotification")[-1:] != [] and
                         csms.of("StatusNotification")[-1]["connectorStatus"] == "Available",
                         "Available after the stop")  # fmt: skip


async def test_get_and_set_variables(csms: Csms201) -> None:
    async with station(csms, local_list_max_length=25) as cs:
        await cs.connect()
        point = csms.points["CS1"]
        comm = {"name": "OCPPCommCtrlr"}
        done = await point.call(call.SetVariables(set_variable_data=[
            {"attribute_value": "120", "component": comm, "variable": {"name": "HeartbeatInterval"}},
            {"attribute_value": "7", "component": {"name": "EVSE"}, "variable": {"name": "Count"}},
            {"attribute_value": "x", "component": comm, "variable": {"name": "NoSuchVariable"}},
        ]))  # fmt: skip
        got = await point.call(call.GetVariables(get_variable_data=[
            {"component": comm, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "ItemsPerMessage"}},
            {"component": {"name": "LocalAuthListCtrlr"},
             "variable": {"name": "ItemsPerMessageSendLocalList"}},
            {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "X"}},
        ]))  # fmt: skip
    assert [r["attribute_status"] for r in done.set_variable_result] == [
        "Accepted", "Rejected", "UnknownVariable"
    ]  # fmt: skip
    assert cs.heartbeat_interval == 120
    statuses = [(r["attribute_status"], r.get("attribute_value")) for r in got.get_variable_result]
    assert statuses == [
        ("Accepted", "120"), ("Accepted", "25"), ("Accepted", "25"), ("UnknownComponent", None)
    ]  # fmt: skip


async def test_get_base_report_sends_notify_report_in_chunks(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        answer = await csms.points["CS1"].call(
            call.GetBaseReport(request_id=5, report_base="FullInventory")
        )
        assert answer.status == "Accepted"
        total = len(cs.state.variables)
        await eventually(
            lambda: sum(len(r.get("reportData", [])) for r in csms.of("NotifyReport")) == total,
            "every variable reported",
        )
    reports = csms.of("NotifyReport")
    assert [r["seqNo"] for r in reports] == list(range(len(reports)))
    assert {r["requestId"] for r in reports} == {5}
    assert [r["tbc"] for r in reports] == [True] * (len(reports) - 1) + [False]
    names = {item["variable"]["name"] for r in reports for item in r["reportData"]}
    assert {"HeartbeatInterval", "ItemsPerMessage", "TxUpdatedInterval"} <= names


async def test_reset_reboots_and_trigger_asks_again(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        reset = await csms.points["CS1"].call(call.Reset(type="Immediate"))
        assert reset.status == "Accepted"
        await eventually(lambda: cs.boots == 2 and cs.connected, "a second boot")
        assert csms.of("BootNotification")[-1]["reason"] == "RemoteReset"
        point = csms.points["CS1"]  # the connection after the reboot
        trigger = await point.call(call.TriggerMessage(requested_message="StatusNotification",
                                                       evse={"id": 2}))  # fmt: skip
        assert trigger.status == "Accepted"
        await eventually(lambda: len(csms.of("StatusNotification")) == 1, "triggered status")
        assert csms.of("StatusNotification")[0]["evseId"] == 2
        boot = await point.call(call.TriggerMessage(requested_message="BootNotification"))
        assert boot.status == "Accepted"
        await eventually(lambda: csms.of("BootNotification")[-1]["reason"] == "Triggered", "boot")
        log = await point.call(call.TriggerMessage(requested_message="LogStatusNotification"))
        assert log.status == "NotImplemented"
        missing = await point.call(call.TriggerMessage(requested_message="Heartbeat",
                                                       evse={"id": 9}))  # fmt: skip
        assert missing.status == "Rejected"


async def test_reset_on_idle_is_scheduled_while_charging(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        await cs.start_transaction(1, "AABBCCDD")
        reset = await csms.points["CS1"].call(call.Reset(type="OnIdle"))
        assert reset.status == "Scheduled"
        assert cs.boots == 1


async def test_availability_and_unlock(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        point = csms.points["CS1"]
        change = await point.call(call.ChangeAvailability(operational_status="Inoperative",
                                                          evse={"id": 1}))  # fmt: skip
        assert change.status == "Accepted"
        await eventually(lambda: len(csms.of("StatusNotification")) == 1, "Unavailable")
        assert csms.of("StatusNotification")[0]["connectorStatus"] == "Unavailable"
        await cs.start_transaction(2, "AABBCCDD")
        busy = await point.call(call.ChangeAvailability(operational_status="Inoperative",
                                                        evse={"id": 2}))  # fmt: skip
        assert busy.status == "Scheduled"
        unlocks = [
            (await point.call(call.UnlockConnector(evse_id=e, connector_id=c))).status
            for e, c in ((1, 1), (2, 1), (5, 1))
        ]
    assert unlocks == ["Unlocked", "OngoingAuthorizedTransaction", "UnknownConnector"]


def _entry(token: str, status: str | None = "Accepted") -> dict[str, Any]:
    entry: dict[str, Any] = {"id_token": {"id_token": token, "type": "ISO14443"}}
    if status is not None:
        entry["id_token_info"] = {"status": status}
    return entry


async def test_send_local_list_versions_and_offline_authorization(csms: Csms201) -> None:
    async with station(csms, local_list_max_length=3) as cs:
        await cs.connect()
        point = csms.points["CS1"]
        assert (await point.call(call.GetLocalListVersion())).version_number == 0
        full = await point.call(call.SendLocalList(
            version_number=4, update_type="Full",
            local_authorization_list=[_entry("aabbccdd"), _entry("11223344", "Blocked")],
        ))  # fmt: skip
        stale = await point.call(call.SendLocalList(
            version_number=4, update_type="Differential", local_authorization_list=[_entry("X1")],
        ))  # fmt: skip
        diff = await point.call(call.SendLocalList(
            version_number=5, update_type="Differential",
            local_authorization_list=[_entry("11223344", None), _entry("55667788")],
        ))  # fmt: skip
        too_many = await point.call(call.SendLocalList(
            version_number=6, update_type="Full",
            local_authorization_list=[_entry(f"0000000{i}") for i in range(4)],
        ))  # fmt: skip
        version = (await point.call(call.GetLocalListVersion())).version_number
    assert (full.status, stale.status, diff.status, too_many.status) == (
        "Accepted", "VersionMismatch", "Accepted", "Failed"
    )  # fmt: skip
    assert version == 5
    assert cs.local_list == {"AABBCCDD": "Accepted", "55667788": "Accepted"}
    assert cs.authorize_locally("AaBbCcDd") and not cs.authorize_locally("11223344")


async def test_get_transaction_status_sees_queued_events(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        csms.fail["TransactionEvent"] = 1
        tx = await cs.start_transaction(1, "AABBCCDD")
        assert cs.pending == 1  # the CallError counted one attempt; the event stays queued
        status = await csms.points["CS1"].call(call.GetTransactionStatus(transaction_id=tx))
        assert status.messages_in_queue is True and status.ongoing_indicator is True
        assert await cs.retry_unanswered() == 0
        anything = await csms.points["CS1"].call(call.GetTransactionStatus())
        assert anything.messages_in_queue is False and anything.ongoing_indicator is None


async def test_an_event_refused_every_attempt_is_dropped(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        csms.fail["TransactionEvent"] = 3
        await cs.start_transaction(1, "AABBCCDD")
        assert await cs.retry_unanswered() == 0
    assert len(cs.dropped) == 1 and cs.dropped[0].payload["eventType"] == "Started"
    assert len(csms.of("TransactionEvent")) == 3


async def test_out_of_order_and_replayed_events_as_sent(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        tx = await cs.start_transaction(1, "AABBCCDD")
        await cs.meter_values(1, tx, 100)
        again = await cs.replay_last(1, same_id=True)
        ended = {"eventType": "Ended", "timestamp": "2024-05-01T12:00:00.000Z",
                 "triggerReason": "EVDeparted", "seqNo": 0,
                 "transactionInfo": {"transactionId": "NEVER-STARTED", "stoppedReason": "Local"}}  # fmt: skip
        await cs.send_raw("TransactionEvent", ended)
    assert again == [{}]
    events = csms.of("TransactionEvent")
    assert [(e["eventType"], e["seqNo"]) for e in events] == [
        ("Started", 0), ("Updated", 1), ("Updated", 1), ("Ended", 0)
    ]  # fmt: skip


async def test_an_answer_that_breaks_its_schema_is_caught(csms: Csms201) -> None:
    csms.broken_heartbeat = True
    async with station(csms) as cs:
        await cs.connect()
        with pytest.raises(SimChargerError, match="Heartbeat answer breaks the schema"):
            await cs.heartbeat()
        cs.strict_answers = False
        assert await cs.heartbeat() == {"currentTime": 12345}
    assert [action for action, _ in cs.invalid_answers] == ["Heartbeat", "Heartbeat"]


async def test_the_station_never_sends_what_its_schema_refuses(csms: Csms201) -> None:
    async with station(csms) as cs:
        await cs.connect()
        with pytest.raises(SimChargerError, match="payload invalid"):
            await cs.status(1, "Dancing")
    assert csms.of("StatusNotification") == []


_NAMES = st.sampled_from(
    ["OCPPCommCtrlr", "LocalAuthListCtrlr", "EVSE", "AuthCtrlr", "SampledDataCtrlr", "Nope"]
)
_VARIABLES = st.sampled_from(
    ["HeartbeatInterval", "ItemsPerMessage", "Count", "Enabled", "TxUpdatedInterval", "X"]
)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(_NAMES, _VARIABLES, st.text(max_size=12)), max_size=8))
def test_set_variable_answers_a_status_for_any_value(
    changes: list[tuple[str, str, str]],
) -> None:
    state = StationState(evses=2)
    for component, variable, value in changes:
        status = state.set_variable(component, variable, value)
        assert status in {"Accepted", "Rejected", "UnknownComponent", "UnknownVariable"}
        got, read = state.get_variable(component, variable)
        if status == "Accepted":
            assert (got, read) == ("Accepted", value)
    assert isinstance(state.heartbeat_interval, int)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10),
            st.sampled_from(["Full", "Differential"]),
            st.lists(
                st.tuples(
                    st.text("ABCD0123", min_size=1, max_size=4),
                    st.sampled_from(["Accepted", "Blocked", None]),
                ),
                max_size=6,
            ),  # fmt: skip
        ),
        max_size=6,
    )
)
def test_send_local_list_never_breaks_its_limits(
    updates: list[tuple[int, str, list[tuple[str, str | None]]]],
) -> None:
    state = StationState(evses=1, items_per_message=4, local_list_capacity=5)
    for version, kind, entries in updates:
        before = state.local_list_version
        status = state.send_local_list(version, kind, [_entry(t, s) for t, s in entries])
        assert status in {"Accepted", "Failed", "VersionMismatch"}
        assert len(state.local_list) <= 5
        if status == "Accepted":
            assert state.local_list_version == version
        else:
            assert state.local_list_version == before
