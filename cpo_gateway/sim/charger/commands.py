"""How the simulated charge point answers the central system's commands.

Every answer comes from local state at once. What a real charger does next (start charging,
stop, report a status) runs as a follow-up task after the answer has gone out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import OCPPError

from cpo_gateway.sim.charger.link import FollowUp, Reply
from cpo_gateway.sim.charger.state import CHARGE_POWER_W, Transaction
from cpo_gateway.sim.charger.wire import ChargerOffline

if TYPE_CHECKING:
    from cpo_gateway.sim.charger.simulator import SimCharger

log = structlog.get_logger(__name__)

# A meter loop ends with its transaction; this bound only guards against a forgotten one.
MAX_METER_SAMPLES = 100_000
_REJECTED: Reply = ("Rejected", None)


class ChargerCommands:
    def __init__(self, charger: SimCharger) -> None:
        self._charger = charger
        self._state = charger.state
        self._starting: set[int] = set()
        self._stopping: set[int] = set()

    def record_received(self, action: str, payload: dict[str, Any]) -> None:
        self._charger.received.append((action, payload))
        self._charger.received_at.append(time.time())

    def ignores(self, action: str) -> bool:
        return action == "RemoteStartTransaction" and self._charger.remote_start == "ignore"

    def spawn_follow_up(self, follow_up: FollowUp, name: str) -> None:
        self._charger.spawn(follow_up(), name)

    # -- remote start / stop -----------------------------------------------------------------

    def remote_start(self, id_tag: str, connector_id: int | None) -> Reply:
        connector = 1 if connector_id is None else connector_id
        if self._charger.remote_start == "no-plug":
            return "Accepted", None
        if (
            self._charger.remote_start != "accept"
            or not 1 <= connector <= self._state.connectors
            or connector in self._state.transactions
            or connector in self._starting
        ):
            return _REJECTED
        self._starting.add(connector)

        async def run() -> None:
            try:
                await self._try_status(connector, "Preparing")
                meter_start = self._state.registers.get(connector, 0)
                await self._charger.start_transaction(connector, id_tag, meter_start=meter_start)
                await self._try_status(connector, "Charging")
            finally:
                self._starting.discard(connector)

        return "Accepted", run

    def remote_stop(self, transaction_id: int) -> Reply:
        transaction = self._state.transaction_by_id(transaction_id)
        if transaction is None or transaction.connector_id in self._stopping:
            return _REJECTED
        connector = transaction.connector_id
        self._stopping.add(connector)

        async def run() -> None:
            try:
                await self._charger.stop_transaction(
                    transaction.transaction_id,
                    transaction.meter_wh,
                    reason="Remote",
                    id_tag=transaction.id_tag,
                )
                await self._try_status(connector, "Finishing")
                await self._try_status(connector, "Available")
            finally:
                self._stopping.discard(connector)

        return "Accepted", run

    # -- reservations (the Reservation profile) ----------------------------------------------

    def reserve_now(self, connector_id: int, id_tag: str, reservation_id: int) -> Reply:
        if not self._state.reservation_supported:
            raise OcppNotImplemented(description="ReserveNow: no Reservation profile")
        connector = connector_id or 1  # 0: any connector; this charger picks the first
        if not 1 <= connector <= self._state.connectors:
            return _REJECTED
        status = self._state.connector_status.get(connector, "Available")
        if connector in self._state.transactions or connector in self._starting:
            return "Occupied", None
        if status in ("Faulted", "Unavailable"):
            return status, None
        held = [c for c, _ in self._state.reservations.values()]
        if connector in held and reservation_id not in self._state.reservations:
            return "Occupied", None
        self._state.reservations[reservation_id] = (connector, id_tag)

        async def run() -> None:
            await self._try_status(connector, "Reserved")

        return "Accepted", run

    def cancel_reservation(self, reservation_id: int) -> Reply:
        if not self._state.reservation_supported:
            raise OcppNotImplemented(description="CancelReservation: no Reservation profile")
        held = self._state.reservations.pop(reservation_id, None)
        if held is None:
            return _REJECTED
        connector = held[0]

        async def run() -> None:
            await self._try_status(connector, "Available")

        return "Accepted", run

    # -- trigger message ---------------------------------------------------------------------

    def trigger(self, requested_message: str, connector_id: int | None) -> Reply:
        if connector_id is not None and not 0 <= connector_id <= self._state.connectors:
            return _REJECTED
        connectors = [connector_id] if connector_id else list(range(1, self._state.connectors + 1))
        charger = self._charger
        follow_up: FollowUp
        if requested_message == "StatusNotification":

            async def follow_up() -> None:
                for connector in connectors:
                    status = self._state.connector_status.get(connector, "Available")
                    await self._tolerate(charger.status(connector, status))

        elif requested_message == "BootNotification":

            async def follow_up() -> None:
                await self._tolerate(charger.boot())

        elif requested_message == "Heartbeat":

            async def follow_up() -> None:
                await self._tolerate(charger.heartbeat())

        elif requested_message == "MeterValues":

            async def follow_up() -> None:
                for connector in connectors:
                    await self._trigger_meter_values(connector)

        else:
            return "NotImplemented", None
        return "Accepted", follow_up

    async def _trigger_meter_values(self, connector: int) -> None:
        running = self._state.transactions.get(connector)
        if running is None:
            wh, transaction_id = self._state.registers.get(connector, 0), None
        else:
            wh, transaction_id = running.meter_wh, running.transaction_id
        await self._charger.meter_values(connector, transaction_id, wh, context="Trigger")

    # -- configuration and local list --------------------------------------------------------

    def send_local_list(
        self, list_version: int, update_type: str, entries: list[dict[str, Any]]
    ) -> str:
        return self._state.send_local_list(list_version, update_type, entries)

    def get_local_list_version(self) -> int:
        return self._state.get_local_list_version()

    def get_configuration(self, keys: list[str] | None) -> dict[str, Any]:
        return self._state.get_configuration(keys)

    def change_configuration(self, key: str, value: str) -> str:
        return self._state.change_configuration(key, value)

    # -- helpers -----------------------------------------------------------------------------

    async def _try_status(self, connector: int, status: str) -> None:
        await self._tolerate(self._charger.status(connector, status))

    async def _tolerate(self, message: Coroutine[Any, Any, Any]) -> None:
        # A status or heartbeat the server cannot take now is not worth a retry: the charger
        # reports its current status again after the next connect or trigger.
        try:
            await message
        except (ChargerOffline, TimeoutError, OCPPError) as error:
            log.info(
                "sim_charger.message_not_delivered",
                charge_point_id=self._charger.charge_point_id,
                error=repr(error),
            )

    async def meter_loop(self, transaction: Transaction, stop: asyncio.Event) -> None:
        """Periodic MeterValues while `transaction` runs, at MeterValueSampleInterval."""
        for _ in range(MAX_METER_SAMPLES):
            interval = self._state.meter_interval_s
            if interval <= 0:
                return
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return
            except TimeoutError:
                pass
            if self._state.transactions.get(transaction.connector_id) is not transaction:
                return
            wh = transaction.meter_wh + round(CHARGE_POWER_W * interval / 3600)
            await self._charger.meter_values(
                transaction.connector_id, transaction.transaction_id, wh
            )
