"""An OCPP 2.0.1 charger for the tests, built on the `ocpp` package's v201 ChargePoint (a
client we did not write; it checks its own messages against the OCA schemas).

It answers the gateway's commands from memory and records them; a RequestStartTransaction
it accepts is followed by a TransactionEvent Started naming the remoteStartId, and a
RequestStopTransaction by an Ended, as a real charger does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

# Recent: a CDR older than a quarter is held for review.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def stamp(seconds: float) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def meter(wh: float, at: float, *, unit: str = "Wh") -> list[dict[str, Any]]:
    value = wh / 1000 if unit == "kWh" else wh
    return [
        {
            "timestamp": stamp(at),
            "sampled_value": [
                {
                    "value": value,
                    "measurand": "Energy.Active.Import.Register",
                    "unit_of_measure": {"unit": unit},
                }
            ],
        }
    ]


@dataclass
class Memory:
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    variables: dict[tuple[str, str], str] = field(default_factory=dict)
    local_list: dict[str, str] = field(default_factory=dict)
    list_version: int = 0
    transactions: dict[str, int] = field(default_factory=dict)  # id -> evse
    seq: int = 0
    meter_wh: float = 1000.0
    stop_delta_wh: float = 5000.0  # energy by the Ended a remote stop brings
    auto_start: bool = True  # False: a RequestStartTransaction is accepted, begun by the test
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Point(ChargePoint):
    memory: Memory
    tasks: set[asyncio.Task[None]]

    def _record(self, action: str, **kwargs: Any) -> None:
        self.memory.commands.append((action, kwargs))

    def next_seq(self) -> int:
        self.memory.seq += 1
        return self.memory.seq - 1

    async def event(
        self,
        event_type: str,
        tx_id: str,
        *,
        trigger: str = "Authorized",
        at: float = 0.0,
        seq: int | None = None,
        evse: int | None = 1,
        token: tuple[str, str] | None = None,
        meter_value: list[dict[str, Any]] | None = None,
        offline: bool | None = None,
        stopped_reason: str | None = None,
        remote_start_id: int | None = None,
        charging_state: str | None = None,
    ) -> Any:
        info: dict[str, Any] = {"transaction_id": tx_id}
        if charging_state is not None:
            info["charging_state"] = charging_state
        if stopped_reason is not None:
            info["stopped_reason"] = stopped_reason
        if remote_start_id is not None:
            info["remote_start_id"] = remote_start_id
        return await self.call(
            call.TransactionEvent(
                event_type=event_type,
                timestamp=stamp(at),
                trigger_reason=trigger,
                seq_no=self.next_seq() if seq is None else seq,
                transaction_info=info,
                meter_value=meter_value,
                offline=offline,
                evse=None if evse is None else {"id": evse, "connector_id": 1},
                id_token=None if token is None else {"id_token": token[0], "type": token[1]},
            ),
            suppress=False,
        )

    async def call_authorize(self, token: str, type_: str = "ISO14443") -> Any:
        return await self.call(
            call.Authorize(id_token={"id_token": token, "type": type_}), suppress=False
        )

    async def status(self, evse: int, status: str, at: float = 0.0) -> None:
        await self.call(
            call.StatusNotification(
                timestamp=stamp(at), connector_status=status, evse_id=evse, connector_id=1
            ),
            suppress=False,
        )

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @on(Action.request_start_transaction)
    async def on_start(self, id_token: dict[str, Any], remote_start_id: int, **kw: Any) -> Any:
        self._record(
            "RequestStartTransaction", id_token=id_token, remote_start_id=remote_start_id, **kw
        )
        tx_id = f"TX-{remote_start_id}"
        evse = int(kw.get("evse_id", 1))
        self.memory.transactions[tx_id] = evse

        async def started() -> None:
            await asyncio.sleep(0.05)  # after our answer, as a charger does
            await self.event(
                "Started",
                tx_id,
                trigger="RemoteStart",
                evse=evse,
                meter_value=meter(self.memory.meter_wh, 1),
                remote_start_id=remote_start_id,
            )
            self.memory.started.set()

        if self.memory.auto_start:
            self._later(started())
        return call_result.RequestStartTransaction(status="Accepted", transaction_id=tx_id)

    @on(Action.request_stop_transaction)
    async def on_stop(self, transaction_id: str, **kw: Any) -> Any:
        self._record("RequestStopTransaction", transaction_id=transaction_id)
        if transaction_id not in self.memory.transactions:
            return call_result.RequestStopTransaction(status="Rejected")
        evse = self.memory.transactions.pop(transaction_id)

        async def ended() -> None:
            await asyncio.sleep(0.05)
            await self.event(
                "Ended",
                transaction_id,
                trigger="RemoteStop",
                evse=evse,
                at=600,
                meter_value=meter(self.memory.meter_wh + self.memory.stop_delta_wh, 600),
                stopped_reason="Remote",
            )
            self.memory.ended.set()

        self._later(ended())
        return call_result.RequestStopTransaction(status="Accepted")

    @on(Action.get_variables)
    async def on_get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._record("GetVariables", get_variable_data=get_variable_data)
        results = []
        for item in get_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            value = self.memory.variables.get(key)
            row: dict[str, Any] = {
                "attribute_status": "Accepted" if value is not None else "UnknownVariable",
                "component": item["component"],
                "variable": item["variable"],
            }
            if value is not None:
                row["attribute_value"] = value
            results.append(row)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.set_variables)
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._record("SetVariables", set_variable_data=set_variable_data)
        results = []
        for item in set_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            self.memory.variables[key] = item["attribute_value"]
            results.append(
                {
                    "attribute_status": "Accepted",
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return call_result.SetVariables(set_variable_result=results)

    @on(Action.get_base_report)
    async def on_base_report(self, request_id: int, report_base: str, **kw: Any) -> Any:
        self._record("GetBaseReport", request_id=request_id, report_base=report_base)

        async def report() -> None:
            await asyncio.sleep(0.05)
            await self.call(
                call.NotifyReport(
                    request_id=request_id,
                    generated_at=stamp(0),
                    seq_no=0,
                    report_data=[
                        {
                            "component": {"name": "LocalAuthListCtrlr"},
                            "variable": {"name": "Enabled"},
                            "variable_attribute": [{"value": "true"}],
                        }
                    ],
                ),
                suppress=False,
            )

        self._later(report())
        return call_result.GetBaseReport(status="Accepted")

    @on(Action.send_local_list)
    async def on_send_local_list(
        self, version_number: int, update_type: str, local_authorization_list: Any = None, **kw: Any
    ) -> Any:
        self._record(
            "SendLocalList",
            version_number=version_number,
            update_type=update_type,
            items=len(local_authorization_list or ()),
        )
        if update_type == "Differential" and version_number <= self.memory.list_version:
            return call_result.SendLocalList(status="VersionMismatch")
        if update_type == "Full":
            self.memory.local_list = {}
        for item in local_authorization_list or ():
            self.memory.local_list[item["id_token"]["id_token"]] = item["id_token_info"]["status"]
        self.memory.list_version = version_number
        return call_result.SendLocalList(status="Accepted")

    @on(Action.get_local_list_version)
    async def on_list_version(self, **kw: Any) -> Any:
        self._record("GetLocalListVersion")
        return call_result.GetLocalListVersion(version_number=self.memory.list_version)

    @on(Action.trigger_message)
    async def on_trigger(self, requested_message: str, **kw: Any) -> Any:
        self._record("TriggerMessage", requested_message=requested_message, **kw)
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.reset)
    async def on_reset(self, type: str, **kw: Any) -> Any:  # noqa: A002  # the field's name
        self._record("Reset", type=type, **kw)
        return call_result.Reset(status="Accepted")

    @on(Action.change_availability)
    async def on_availability(self, operational_status: str, **kw: Any) -> Any:
        self._record("ChangeAvailability", operational_status=operational_status, **kw)
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.unlock_connector)
    async def on_unlock(self, evse_id: int, connector_id: int, **kw: Any) -> Any:
        self._record("UnlockConnector", evse_id=evse_id, connector_id=connector_id)
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.get_transaction_status)
    async def on_tx_status(self, transaction_id: str | None = None, **kw: Any) -> Any:
        self._record("GetTransactionStatus", transaction_id=transaction_id)
        return call_result.GetTransactionStatus(
            messages_in_queue=False, ongoing_indicator=transaction_id in self.memory.transactions
        )


@contextlib.asynccontextmanager
async def charger201(
    url: str,
    cp_id: str,
    memory: Memory | None = None,
    *,
    boot: bool = True,
    kind: type[Point] = Point,
) -> AsyncIterator[Point]:
    """A connected 2.0.1 charger (booted unless `boot` is False), closed on exit; `kind`: a
    Point that answers more than this one does."""
    ws: ClientConnection = await connect(
        f"{url}/{cp_id}", subprotocols=[Subprotocol("ocpp2.0.1")], open_timeout=10
    )
    assert ws.subprotocol == "ocpp2.0.1"
    point = kind(cp_id, ws, response_timeout=10)
    point.memory = memory or Memory()
    point.tasks = set()
    runner = asyncio.get_running_loop().create_task(point.start())
    try:
        if boot:
            answer = await point.call(
                call.BootNotification(
                    charging_station={"vendor_name": "TestVendor", "model": "T201"},
                    reason="PowerUp",
                ),
                suppress=False,
            )
            point.boot_status = answer.status
        yield point
    finally:
        for task in list(point.tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        await ws.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
