"""The simulated charge point against a small OCPP 1.6 central system written here.

The central system is the `ocpp` library's ChargePoint on a websockets server on port 0: it
answers from memory and records every frame, so the tests see what a real server would see.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request
from websockets.typing import Subprotocol

from cpo_gateway.sim.charger.simulator import ChargerOffline, SimCharger
from cpo_gateway.sim.charger.state import ChargerState, ocpp_timestamp

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Frame:
    charge_point_id: str
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass
class CentralSystem:
    """Answers from memory; `fail` and `drop` make chosen actions misbehave once each."""

    accepted_tags: set[str] = field(default_factory=lambda: {"AABBCCDD"})
    heartbeat_interval: int = 42
    response_timeout: float = 5
    frames: list[Frame] = field(default_factory=list)
    auth_headers: dict[str, str | None] = field(default_factory=dict)
    points: dict[str, CsmsPoint] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    drop: set[str] = field(default_factory=set)
    next_transaction_id: int = 100
    server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ocpp"

    def actions(self, charge_point_id: str = "CP1") -> list[str]:
        return [f.action for f in self.frames if f.charge_point_id == charge_point_id]

    def of(self, action: str) -> list[dict[str, Any]]:
        return [f.payload for f in self.frames if f.action == action]

    def process_request(self, connection: ServerConnection, request: Request) -> None:
        self.auth_headers[request.path.rsplit("/", 1)[-1]] = request.headers.get("Authorization")

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        charge_point_id = ws.request.path.rsplit("/", 1)[-1]
        point = CsmsPoint(charge_point_id, ws, self)
        self.points[charge_point_id] = point
        with contextlib.suppress(ConnectionClosed):
            await point.start()


class CsmsPoint(ChargePoint):
    def __init__(self, charge_point_id: str, ws: ServerConnection, csms: CentralSystem) -> None:
        super().__init__(charge_point_id, ws, csms.response_timeout)
        self.csms = csms
        self.ws = ws

    async def route_message(self, raw_msg: str) -> None:
        message = json.loads(raw_msg)
        if message[0] == 2:
            action = message[2]
            self.csms.frames.append(Frame(self.id, message[1], action, message[3]))
            if action in self.csms.drop:
                # A connection lost after the charger sent, before any answer.
                self.csms.drop.discard(action)
                await self.ws.close()
                return
        await super().route_message(raw_msg)

    def _maybe_fail(self, action: str) -> None:
        if action in self.csms.fail:
            self.csms.fail.discard(action)
            raise InternalError(description="told to fail")

    @on(Action.boot_notification)
    def on_boot(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=ocpp_timestamp(NOW),
            interval=self.csms.heartbeat_interval,
            status="Accepted",
        )

    @on(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=ocpp_timestamp(NOW))

    @on(Action.status_notification)
    def on_status(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> call_result.Authorize:
        status = "Accepted" if id_tag in self.csms.accepted_tags else "Invalid"
        return call_result.Authorize(id_tag_info={"status": status})

    @on(Action.start_transaction)
    def on_start(self, id_tag: str, **_: Any) -> call_result.StartTransaction:
        self._maybe_fail("StartTransaction")
        transaction_id = self.csms.next_transaction_id
        self.csms.next_transaction_id += 1
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": "Accepted"}
        )

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        self._maybe_fail("MeterValues")
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop(self, **_: Any) -> call_result.StopTransaction:
        self._maybe_fail("StopTransaction")
        return call_result.StopTransaction(id_tag_info={"status": "Accepted"})


@pytest.fixture
async def csms() -> AsyncIterator[CentralSystem]:
    central = CentralSystem()
    async with serve(
        central.handler,
        "127.0.0.1",
        0,
        subprotocols=[Subprotocol("ocpp1.6")],
        process_request=central.process_request,
    ) as server:
        central.server = server
        yield central


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def sim(csms: CentralSystem, **kwargs: Any) -> SimCharger:
    return SimCharger("CP1", csms.url, clock=lambda: NOW, **kwargs)


async def test_boot_and_heartbeat(csms: CentralSystem) -> None:
    async with sim(csms, vendor="ACME") as charger:
        await charger.connect()
        answer = await charger.heartbeat()
        assert charger.connected
    assert charger.boot_status == "Accepted"
    assert charger.heartbeat_interval == 42
    assert answer["currentTime"] == "2024-05-01T12:00:00.000Z"
    assert csms.actions() == ["BootNotification", "Heartbeat"]
    assert csms.of("BootNotification")[0]["chargePointVendor"] == "ACME"
    assert ("Heartbeat", answer) in charger.answers
    assert not charger.connected


async def test_full_transaction_with_meter_values(csms: CentralSystem) -> None:
    async with sim(csms) as charger:
        await charger.connect()
        assert await charger.authorize("AABBCCDD") == "Accepted"
        assert await charger.authorize("00000000") == "Invalid"
        await charger.status(1, "Preparing")
        transaction_id = await charger.start_transaction(1, "AABBCCDD", meter_start=1000)
        await charger.status(1, "Charging")
        await charger.meter_values(1, transaction_id, 1500)
        await charger.meter_values(1, transaction_id, 1700, extra_samples=False)
        stop = await charger.stop_transaction(transaction_id, 2000, id_tag="AABBCCDD")
    assert transaction_id == 100
    assert stop == {"idTagInfo": {"status": "Accepted"}}
    assert csms.actions()[-5:] == [
        "StartTransaction",
        "StatusNotification",
        "MeterValues",
        "MeterValues",
        "StopTransaction",
    ]
    full, bare = csms.of("MeterValues")
    assert full["transactionId"] == 100
    samples = full["meterValue"][0]["sampledValue"]
    assert samples[0]["measurand"] == "Energy.Active.Import.Register"
    assert samples[0]["value"] == "1500" and samples[0]["unit"] == "Wh"
    assert {s["measurand"] for s in samples} == {
        "Energy.Active.Import.Register",
        "Voltage",
        "Current.Import",
        "Power.Active.Import",
    }
    assert {s.get("phase") for s in samples if s["measurand"] == "Current.Import"} == {
        "L1",
        "L2",
        "L3",
    }
    assert len(bare["meterValue"][0]["sampledValue"]) == 1
    stopped = csms.of("StopTransaction")[0]
    assert stopped["meterStop"] == 2000 and stopped["reason"] == "Local"
    contexts = [m["sampledValue"][0]["context"] for m in stopped["transactionData"]]
    assert contexts == ["Transaction.Begin", "Transaction.End"]
    assert charger.transactions == {}


async def test_remote_start_accept_then_remote_stop(csms: CentralSystem) -> None:
    async with sim(csms, meter_interval_s=0.02) as charger:
        await charger.connect()
        point = csms.points["CP1"]
        answer = await point.call(
            call.RemoteStartTransaction(id_tag="DE8PS1234567X", connector_id=2), suppress=False
        )
        assert answer.status == "Accepted"
        await eventually(
            lambda: "MeterValues" in csms.actions() and len(csms.of("StatusNotification")) == 2,
            "Preparing, Charging and periodic MeterValues",
        )
        started = csms.of("StartTransaction")[0]
        assert started["idTag"] == "DE8PS1234567X" and started["connectorId"] == 2
        statuses = [p["status"] for p in csms.of("StatusNotification")]
        assert statuses[:2] == ["Preparing", "Charging"]
        assert csms.actions().index("StartTransaction") < csms.actions().index("MeterValues")
        assert csms.of("MeterValues")[0]["transactionId"] == 100
        assert charger.transactions[2].transaction_id == 100

        stopped = await point.call(call.RemoteStopTransaction(transaction_id=100), suppress=False)
        assert stopped.status == "Accepted"
        await eventually(lambda: len(csms.of("StatusNotification")) >= 4, "Finishing, Available")
        unknown = await point.call(call.RemoteStopTransaction(transaction_id=999), suppress=False)
    assert unknown.status == "Rejected"
    assert csms.of("StopTransaction")[0]["reason"] == "Remote"
    assert csms.of("StopTransaction")[0]["idTag"] == "DE8PS1234567X"
    assert [p["status"] for p in csms.of("StatusNotification")][2:] == ["Finishing", "Available"]
    assert ("RemoteStopTransaction", {"transactionId": 999}) in charger.received
    assert charger.failures == []


async def test_remote_start_reject(csms: CentralSystem) -> None:
    async with sim(csms, remote_start="reject") as charger:
        await charger.connect()
        answer = await csms.points["CP1"].call(
            call.RemoteStartTransaction(id_tag="AABBCCDD"), suppress=False
        )
        await charger.heartbeat()  # everything the charger sent before this has arrived
    assert answer.status == "Rejected"
    assert "StartTransaction" not in csms.actions()


async def test_remote_start_on_busy_connector_is_rejected(csms: CentralSystem) -> None:
    async with sim(csms) as charger:
        await charger.connect()
        await charger.start_transaction(1, "AABBCCDD")
        answer = await csms.points["CP1"].call(
            call.RemoteStartTransaction(id_tag="AABBCCDD", connector_id=1), suppress=False
        )
    assert answer.status == "Rejected"


async def test_remote_start_ignore_times_out(csms: CentralSystem) -> None:
    csms.response_timeout = 0.2
    async with sim(csms, remote_start="ignore") as charger:
        await charger.connect()
        with pytest.raises(asyncio.TimeoutError):
            await csms.points["CP1"].call(
                call.RemoteStartTransaction(id_tag="AABBCCDD"), suppress=False
            )
        # The charger stays responsive after swallowing the command.
        await charger.heartbeat()
    assert charger.received == [("RemoteStartTransaction", {"idTag": "AABBCCDD"})]
    assert "StartTransaction" not in csms.actions()


async def test_send_local_list_and_offline_authorization(csms: CentralSystem) -> None:
    async with sim(csms) as charger:
        await charger.connect()
        point = csms.points["CP1"]
        entries = [
            {"idTag": "AABBCCDD", "idTagInfo": {"status": "Accepted"}},
            {"idTag": "11223344", "idTagInfo": {"status": "Blocked"}},
        ]
        sent = await point.call(
            call.SendLocalList(
                list_version=3, update_type="Full", local_authorization_list=entries
            ),
            suppress=False,
        )
        version = await point.call(call.GetLocalListVersion(), suppress=False)
        stale = await point.call(
            call.SendLocalList(list_version=2, update_type="Differential"), suppress=False
        )
        await charger.disconnect()
        assert charger.authorize_locally("aabbccdd")
        assert not charger.authorize_locally("11223344")
        assert not charger.authorize_locally("99999999")
    assert sent.status == "Accepted"
    assert version.list_version == 3
    assert stale.status == "VersionMismatch"
    assert charger.local_list == {"AABBCCDD": "Accepted", "11223344": "Blocked"}
    assert charger.local_list_version == 3


async def test_local_list_not_supported(csms: CentralSystem) -> None:
    async with sim(csms, local_list_supported=False) as charger:
        await charger.connect()
        point = csms.points["CP1"]
        sent = await point.call(
            call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=[]),
            suppress=False,
        )
        version = await point.call(call.GetLocalListVersion(), suppress=False)
    assert sent.status == "NotSupported"
    assert version.list_version == -1


async def test_trigger_message(csms: CentralSystem) -> None:
    async with sim(csms, connectors=3) as charger:
        await charger.connect()
        point = csms.points["CP1"]
        status = await point.call(
            call.TriggerMessage(requested_message="StatusNotification"), suppress=False
        )
        await eventually(lambda: len(csms.of("StatusNotification")) == 3, "three statuses")
        one = await point.call(
            call.TriggerMessage(requested_message="MeterValues", connector_id=2), suppress=False
        )
        await eventually(lambda: len(csms.of("MeterValues")) == 1, "triggered MeterValues")
        heartbeat = await point.call(
            call.TriggerMessage(requested_message="Heartbeat"), suppress=False
        )
        await eventually(lambda: "Heartbeat" in csms.actions(), "triggered Heartbeat")
        other = await point.call(
            call.TriggerMessage(requested_message="DiagnosticsStatusNotification"), suppress=False
        )
        bad = await point.call(
            call.TriggerMessage(requested_message="Heartbeat", connector_id=9), suppress=False
        )
    assert [status.status, one.status, heartbeat.status] == ["Accepted"] * 3
    assert other.status == "NotImplemented"
    assert bad.status == "Rejected"
    assert [p["connectorId"] for p in csms.of("StatusNotification")] == [1, 2, 3]
    meter = csms.of("MeterValues")[0]
    assert meter["connectorId"] == 2 and "transactionId" not in meter
    assert meter["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"


async def test_configuration_and_other_commands(csms: CentralSystem) -> None:
    async with sim(csms) as charger:
        await charger.connect()
        point = csms.points["CP1"]
        some = await point.call(
            call.GetConfiguration(key=["SendLocalListMaxLength", "NoSuchKey"]), suppress=False
        )
        changed = await point.call(
            call.ChangeConfiguration(key="HeartbeatInterval", value="60"), suppress=False
        )
        read_only = await point.call(
            call.ChangeConfiguration(key="NumberOfConnectors", value="9"), suppress=False
        )
        everything = await point.call(call.GetConfiguration(), suppress=False)
        availability = await point.call(
            call.ChangeAvailability(connector_id=0, type="Inoperative"), suppress=False
        )
        reset = await point.call(call.Reset(type="Soft"), suppress=False)
        unlock = await point.call(call.UnlockConnector(connector_id=1), suppress=False)
    assert some.configuration_key == [
        {"key": "SendLocalListMaxLength", "readonly": True, "value": "50"}
    ]
    assert some.unknown_key == ["NoSuchKey"]
    assert changed.status == "Accepted" and read_only.status == "Rejected"
    assert charger.heartbeat_interval == 60
    keys = {entry["key"] for entry in everything.configuration_key}
    assert {"LocalAuthListEnabled", "HeartbeatInterval", "SendLocalListMaxLength"} <= keys
    assert [availability.status, reset.status, unlock.status] == [
        "Accepted",
        "Accepted",
        "Unlocked",
    ]
    assert [action for action, _ in charger.received][-3:] == [
        "ChangeAvailability",
        "Reset",
        "UnlockConnector",
    ]


async def test_basic_auth_header(csms: CentralSystem) -> None:
    async with sim(csms, password="s3cret") as charger:
        await charger.connect()
    async with SimCharger("CP2", csms.url) as anonymous:
        await anonymous.connect()
    header = csms.auth_headers["CP1"]
    assert header is not None and header.startswith("Basic ")
    assert base64.b64decode(header.removeprefix("Basic ")) == b"CP1:s3cret"
    assert csms.auth_headers["CP2"] is None


async def test_offline_queue_replays_in_order_with_real_id(csms: CentralSystem) -> None:
    async with sim(csms) as charger:
        await charger.connect()
        await charger.disconnect()
        placeholder = await charger.start_transaction(1, "AABBCCDD", meter_start=10)
        queued = await charger.meter_values(1, placeholder, 500)
        await charger.stop_transaction(placeholder, 900)
        assert placeholder < 0 and queued is None
        assert charger.pending_actions == ["StartTransaction", "MeterValues", "StopTransaction"]
        await charger.connect(boot=False)
        assert charger.pending == 0
    assert csms.actions() == [
        "BootNotification",
        "StartTransaction",
        "MeterValues",
        "StopTransaction",
    ]
    assert csms.of("StartTransaction")[0]["meterStart"] == 10
    assert csms.of("MeterValues")[0]["transactionId"] == 100
    assert csms.of("StopTransaction")[0]["transactionId"] == 100


async def test_reboot_sends_boot_before_queued_messages(csms: CentralSystem) -> None:
    async with sim(csms) as charger:
        await charger.connect()
        transaction_id = await charger.start_transaction(1, "AABBCCDD")
        await charger.disconnect()
        await charger.stop_transaction(transaction_id, 300)
        await charger.connect()
    assert csms.actions() == [
        "BootNotification",
        "StartTransaction",
        "BootNotification",
        "StopTransaction",
    ]
    assert csms.of("StopTransaction")[0]["transactionId"] == transaction_id == 100


async def test_connection_lost_mid_call_keeps_the_message(csms: CentralSystem) -> None:
    csms.drop.add("StartTransaction")
    async with sim(csms) as charger:
        await charger.connect()
        transaction_id = await charger.start_transaction(1, "AABBCCDD")
        assert transaction_id < 0 and charger.pending == 1
        assert not charger.connected
        await charger.stop_transaction(transaction_id, 50)
        await charger.connect(boot=False)
    starts = csms.of("StartTransaction")
    assert len(starts) == 2 and starts[0] == starts[1]
    assert csms.of("StopTransaction")[0]["transactionId"] == 100
    assert charger.pending == 0


async def test_call_error_is_retried(csms: CentralSystem) -> None:
    csms.fail.add("MeterValues")
    async with sim(csms) as charger:
        await charger.connect()
        transaction_id = await charger.start_transaction(1, "AABBCCDD")
        assert await charger.meter_values(1, transaction_id, 100) is None
        assert charger.call_errors == [("MeterValues", "InternalError")]
        assert charger.pending == 1
        assert await charger.retry_unanswered() == 0
    assert csms.actions().count("MeterValues") == 2


async def test_replay_last_with_same_and_new_message_ids(csms: CentralSystem) -> None:
    async with sim(csms) as charger:
        await charger.connect()
        transaction_id = await charger.start_transaction(1, "AABBCCDD")
        await charger.stop_transaction(transaction_id, 700)
        same = await charger.replay_last(1, same_id=True)
        fresh = await charger.replay_last(2, same_id=False)
    stops = [f for f in csms.frames if f.action == "StopTransaction"]
    starts = [f for f in csms.frames if f.action == "StartTransaction"]
    assert same == [{"idTagInfo": {"status": "Accepted"}}]
    assert len(stops) == 3 and len(starts) == 2
    assert stops[0].unique_id == stops[1].unique_id != stops[2].unique_id
    assert stops[0].payload == stops[1].payload == stops[2].payload
    assert starts[0].unique_id != starts[1].unique_id
    assert fresh[0]["transactionId"] == 101  # the server saw a new start
    assert csms.actions()[-2:] == ["StartTransaction", "StopTransaction"]


async def test_close_cancels_meter_loop(csms: CentralSystem) -> None:
    charger = sim(csms, meter_interval_s=0.02)
    await charger.connect()
    await charger.start_transaction(1, "AABBCCDD")
    await eventually(lambda: "MeterValues" in csms.actions(), "periodic MeterValues")
    await charger.close()
    assert charger._tasks == set()
    assert not charger.connected
    assert charger.failures == []


async def test_offline_operations_other_than_transactions_raise(csms: CentralSystem) -> None:
    async with sim(csms) as charger:
        with pytest.raises(ChargerOffline):
            await charger.heartbeat()
        with pytest.raises(ChargerOffline):
            await charger.authorize("AABBCCDD")
    assert csms.frames == []


def test_remote_start_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="remote_start"):
        SimCharger("CP1", "ws://127.0.0.1:1/ocpp", remote_start="maybe")  # type: ignore[arg-type]


def test_timestamps_are_utc_with_z() -> None:
    assert ocpp_timestamp(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05.000Z"  # noqa: DTZ001


_statuses = st.sampled_from(["Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"])
_entries = st.lists(
    st.fixed_dictionaries(
        {"id_tag": st.text(min_size=1, max_size=20)},
        optional={"id_tag_info": st.fixed_dictionaries({"status": _statuses})},
    ),
    max_size=60,
)


@given(
    version=st.integers(-5, 5),
    update_type=st.sampled_from(["Full", "Differential"]),
    entries=_entries,
)
def test_send_local_list_never_breaks_its_limits(
    version: int, update_type: str, entries: list[dict[str, Any]]
) -> None:
    state = ChargerState(connectors=1, local_list_max_length=50)
    status = state.send_local_list(version, update_type, entries)
    assert status in {"Accepted", "Failed", "VersionMismatch"}
    assert len(state.local_list) <= 50
    if status != "Accepted":
        assert state.local_list == {} and state.local_list_version == 0
    else:
        assert state.local_list_version == version
        accepted = {e["id_tag"].upper() for e in entries if e.get("id_tag_info")}
        assert set(state.local_list) <= accepted
