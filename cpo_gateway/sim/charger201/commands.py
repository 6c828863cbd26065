"""How the simulated 2.0.1 station answers the CSMS's requests.

Every answer comes from local state at once. What a real station does next (start or end a
transaction, report statuses, send a NotifyReport, reboot) runs as a follow-up task after the
answer has gone out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog
from ocpp.exceptions import OCPPError

from cpo_gateway.sim.charger.link import FollowUp, Reply
from cpo_gateway.sim.charger.state import CHARGE_POWER_W
from cpo_gateway.sim.charger.wire import ChargerOffline, SimChargerError
from cpo_gateway.sim.charger201.state import Transaction201

if TYPE_CHECKING:
    from cpo_gateway.sim.charger201.simulator import SimCharger201

log = structlog.get_logger(__name__)

MAX_METER_SAMPLES = 100_000  # a meter loop ends with its transaction; this guards a forgotten one
REPORT_ITEMS_PER_MESSAGE = 20  # NotifyReport chunks, each but the last with tbc = true
_REJECTED: Reply = ("Rejected", None)


class StationCommands:
    def __init__(self, charger: SimCharger201) -> None:
        self._charger = charger
        self._state = charger.state
        self._starting: set[int] = set()
        self._stopping: set[int] = set()

    def record_received(self, action: str, payload: dict[str, Any]) -> None:
        self._charger.received.append((action, payload))
        self._charger.received_at.append(time.time())

    def ignores(self, action: str) -> bool:
        return action == "RequestStartTransaction" and self._charger.remote_start == "ignore"

    def spawn_follow_up(self, follow_up: FollowUp, name: str) -> None:
        self._charger.spawn(follow_up(), name)

    # -- remote start / stop -----------------------------------------------------------------

    def request_start(
        self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None
    ) -> Reply:
        evse = 1 if evse_id is None else evse_id
        if self._charger.remote_start == "no-plug":
            return "Accepted", None
        if (
            self._charger.remote_start != "accept"
            or not self._state.has_connector(evse)
            or evse in self._state.transactions
            or evse in self._starting
        ):
            return _REJECTED
        self._starting.add(evse)
        token, token_type = str(id_token["id_token"]), str(id_token["type"])

        async def run() -> None:
            try:
                await self._try_status(evse, "Occupied")
                await self._charger.start_transaction(
                    evse,
                    token,
                    meter_start=self._state.registers.get(evse, 0),
                    id_token_type=token_type,
                    remote_start_id=remote_start_id,
                    trigger_reason="RemoteStart",
                )
            finally:
                self._starting.discard(evse)

        return "Accepted", run

    def request_stop(self, transaction_id: str) -> Reply:
        transaction = self._state.transaction_by_id(transaction_id)
        if transaction is None or transaction.evse_id in self._stopping:
            return _REJECTED
        evse = transaction.evse_id
        self._stopping.add(evse)

        async def run() -> None:
            try:
                await self._charger.stop_transaction(
                    transaction.transaction_id,
                    transaction.meter_wh,
                    reason="Remote",
                    trigger_reason="RemoteStop",
                )
                await self._try_status(evse, "Available")
            finally:
                self._stopping.discard(evse)

        return "Accepted", run

    # -- device model ------------------------------------------------------------------------

    def get_variables(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = []
        for item in data:
            component, variable = item["component"], item["variable"]
            status, value = self._state.get_variable(str(component["name"]), str(variable["name"]))
            attribute = item.get("attribute_type", "Actual")
            if attribute != "Actual" and status == "Accepted":
                status, value = "NotSupportedAttributeType", None
            result: dict[str, Any] = {
                "attribute_status": status,
                "attribute_type": attribute,
                "component": component,
                "variable": variable,
            }
            if value is not None:
                result["attribute_value"] = value
            results.append(result)
        return results

    def set_variables(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = []
        for item in data:
            component, variable = item["component"], item["variable"]
            attribute = item.get("attribute_type", "Actual")
            if attribute != "Actual":
                status = "NotSupportedAttributeType"
            else:
                status = self._state.set_variable(
                    str(component["name"]), str(variable["name"]), str(item["attribute_value"])
                )
            results.append(
                {
                    "attribute_status": status,
                    "attribute_type": attribute,
                    "component": component,
                    "variable": variable,
                }
            )
        return results

    def get_base_report(self, request_id: int, report_base: str) -> Reply:
        if report_base not in ("ConfigurationInventory", "FullInventory", "SummaryInventory"):
            return "NotSupported", None
        items = self._state.report_data()
        chunks = [
            items[i : i + REPORT_ITEMS_PER_MESSAGE]
            for i in range(0, len(items), REPORT_ITEMS_PER_MESSAGE)
        ]

        async def run() -> None:
            for seq_no, chunk in enumerate(chunks):
                await self._tolerate(
                    self._charger.notify_report(
                        request_id, seq_no, chunk, tbc=seq_no < len(chunks) - 1
                    )
                )

        return "Accepted", run

    # -- reset, availability, unlock ---------------------------------------------------------

    def reset(self, reset_type: str, evse_id: int | None) -> Reply:
        if evse_id is not None:
            return _REJECTED  # resetting one EVSE is an optional feature this station lacks
        if self._state.transactions and reset_type == "OnIdle":
            return "Scheduled", None
        charger = self._charger

        async def run() -> None:
            for transaction in list(self._state.transactions.values()):
                await charger.stop_transaction(
                    transaction.transaction_id,
                    transaction.meter_wh,
                    reason="ImmediateReset",
                    trigger_reason="ResetCommand",
                )
            await charger.reboot()

        return "Accepted", run

    def change_availability(self, operational_status: str, evse: dict[str, Any] | None) -> Reply:
        evse_id = None if evse is None else int(evse["id"])
        if evse_id is not None and not self._state.has_connector(evse_id):
            return _REJECTED
        targets = [evse_id] if evse_id is not None else list(range(1, self._state.evses + 1))
        busy = any(t in self._state.transactions for t in targets)
        status = "Available" if operational_status == "Operative" else "Unavailable"
        self._charger.availability.update(dict.fromkeys(targets, operational_status))
        if busy and operational_status == "Inoperative":
            return "Scheduled", None  # G03.FR.05: after the transaction ends

        async def run() -> None:
            for target in targets:
                await self._try_status(target, status)

        return "Accepted", run

    def unlock_connector(self, evse_id: int, connector_id: int) -> str:
        if not self._state.has_connector(evse_id, connector_id):
            return "UnknownConnector"
        if evse_id in self._state.transactions:
            return "OngoingAuthorizedTransaction"
        return "Unlocked"

    # -- trigger message ---------------------------------------------------------------------

    def trigger(self, requested_message: str, evse: dict[str, Any] | None) -> Reply:
        evse_id = None if evse is None else int(evse["id"])
        if evse_id is not None and not self._state.has_connector(evse_id):
            return _REJECTED
        evses = [evse_id] if evse_id else list(range(1, self._state.evses + 1))
        charger = self._charger
        follow_up: FollowUp
        if requested_message == "StatusNotification":

            async def follow_up() -> None:
                for target in evses:
                    for (e, connector), status in sorted(self._state.connector_status.items()):
                        if e == target:
                            await self._tolerate(charger.status(e, status, connector=connector))

        elif requested_message == "BootNotification":

            async def follow_up() -> None:
                await self._tolerate(charger.boot(reason="Triggered"))

        elif requested_message == "Heartbeat":

            async def follow_up() -> None:
                await self._tolerate(charger.heartbeat())

        elif requested_message == "MeterValues":

            async def follow_up() -> None:
                for target in evses:
                    wh = self._state.registers.get(target, 0)
                    await self._tolerate(charger.meter_values_idle(target, wh, context="Trigger"))

        elif requested_message == "TransactionEvent":
            running = [t for t in self._state.transactions.values() if t.evse_id in evses]

            async def follow_up() -> None:
                for transaction in running:
                    await charger.meter_values(
                        transaction.evse_id,
                        transaction.transaction_id,
                        transaction.meter_wh,
                        context="Trigger",
                        trigger_reason="Trigger",
                    )

        else:
            return "NotImplemented", None
        return "Accepted", follow_up

    # -- local list and transaction status ---------------------------------------------------

    def send_local_list(
        self, version_number: int, update_type: str, entries: list[dict[str, Any]]
    ) -> str:
        return self._state.send_local_list(version_number, update_type, entries)

    def get_local_list_version(self) -> int:
        return self._state.local_list_version

    def get_transaction_status(self, transaction_id: str | None) -> dict[str, Any]:
        """F04: whether the transaction still runs here, and whether its events are queued."""
        queued = self._charger.queued_transaction_ids()
        if transaction_id is None:
            return {"messagesInQueue": bool(queued)}
        ongoing = self._state.transaction_by_id(transaction_id) is not None
        return {"messagesInQueue": transaction_id in queued, "ongoingIndicator": ongoing}

    # -- helpers -----------------------------------------------------------------------------

    async def _try_status(self, evse: int, status: str) -> None:
        await self._tolerate(self._charger.status(evse, status))

    async def _tolerate(self, message: Coroutine[Any, Any, Any]) -> None:
        # A status, report or heartbeat the CSMS cannot take now is not retried: the station
        # reports its current state again after the next connect or trigger.
        try:
            await message
        except (ChargerOffline, TimeoutError, OCPPError, SimChargerError) as error:
            log.info(
                "sim_charger.message_not_delivered",
                charge_point_id=self._charger.charge_point_id,
                error=repr(error),
            )

    async def meter_loop(self, transaction: Transaction201, stop: asyncio.Event) -> None:
        """TransactionEvent Updated with meter values every TxUpdatedInterval."""
        for _ in range(MAX_METER_SAMPLES):
            interval = self._state.meter_interval_s
            if interval <= 0:
                return
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return
            except TimeoutError:
                pass
            if self._state.transactions.get(transaction.evse_id) is not transaction:
                return
            wh = transaction.meter_wh + round(CHARGE_POWER_W * interval / 3600)
            await self._charger.meter_values(transaction.evse_id, transaction.transaction_id, wh)
