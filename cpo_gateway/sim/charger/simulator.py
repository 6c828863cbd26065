"""A simulated OCPP 1.6J charge point: a real network peer for the demo, the tests and benchmarks.

It connects like a charger does (subprotocol `ocpp1.6`, HTTP Basic auth, optional TLS), sends
the charge point's messages, answers the central system's commands from its own state and, like
real hardware, keeps transaction messages in order while it cannot deliver them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from ocpp.exceptions import OCPPError

from cpo_gateway.sim.charger.commands import ChargerCommands
from cpo_gateway.sim.charger.offline_queue import OfflineQueue, QueuedMessage
from cpo_gateway.sim.charger.state import (
    ChargerState,
    Transaction,
    ocpp_timestamp,
    sampled_values,
    signed_value,
)
from cpo_gateway.sim.charger.wire import ChargerOffline, ChargerWire, SimChargerError

__all__ = ["ChargerOffline", "SimCharger", "SimChargerError"]

# "no-plug": the charger accepts a remote start but no car is plugged in, so it never starts.
RemoteStartMode = Literal["accept", "reject", "ignore", "no-plug"]
_MAX_FLUSH = 10_000


class SimCharger(ChargerWire):
    """One OCPP 1.6J charge point. Use `async with` or call close(): it owns tasks."""

    def __init__(
        self,
        charge_point_id: str,
        url: str,
        *,
        connectors: int = 2,
        password: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        vendor: str = "cpo-gateway-sim",
        model: str = "SimCharger",
        meter_interval_s: float = 0,
        remote_start: RemoteStartMode = "accept",
        local_list_supported: bool = True,
        reservation_supported: bool = True,
        local_list_max_length: int = 50,
        local_list_capacity: int = 100_000,
        clock: Callable[[], datetime] | None = None,
        call_timeout: float = 30,
        ocpp_log_level: int | None = logging.WARNING,
    ) -> None:
        if remote_start not in ("accept", "reject", "ignore", "no-plug"):
            raise ValueError(
                f"remote_start must be accept, reject, ignore or no-plug, not {remote_start!r}"
            )
        super().__init__(
            charge_point_id,
            url,
            password=password,
            ssl=ssl,
            call_timeout=call_timeout,
            ocpp_log_level=ocpp_log_level,
        )
        self.vendor = vendor
        self.model = model
        self.remote_start: RemoteStartMode = remote_start
        self.state = ChargerState(
            connectors=connectors,
            local_list_supported=local_list_supported,
            reservation_supported=reservation_supported,
            local_list_max_length=local_list_max_length,
            local_list_capacity=local_list_capacity,
            meter_interval_s=meter_interval_s,
        )
        self.boot_status: str | None = None
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.received_at: list[float] = []  # epoch seconds of each command, beside `received`
        self.dropped: list[QueuedMessage] = []
        self._clock = clock or (lambda: datetime.now(UTC))
        self._commands = ChargerCommands(self)
        self._queue = OfflineQueue()
        self._resolved: dict[int, int] = {}
        self._next_placeholder = -1
        self._meter_stops: dict[int, asyncio.Event] = {}
        self._flush_lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        """Transaction messages not yet answered by the central system."""
        return len(self._queue)

    @property
    def pending_actions(self) -> list[str]:
        return self._queue.actions()

    @property
    def heartbeat_interval(self) -> int:
        return self.state.heartbeat_interval

    @property
    def local_list(self) -> dict[str, str]:
        return self.state.local_list

    @property
    def local_list_version(self) -> int:
        return self.state.local_list_version

    @property
    def transactions(self) -> dict[int, Transaction]:
        """Running transactions by connector id."""
        return self.state.transactions

    def transaction_id(self, connector_id: int) -> int | None:
        """The central system's id of the transaction running on a connector, once known."""
        running = self.state.transactions.get(connector_id)
        return running.transaction_id if running and running.transaction_id > 0 else None

    async def connect(self, boot: bool = True) -> None:
        """Open the websocket, optionally boot, then deliver what was queued while offline.

        BootNotification comes first because OCPP 1.6 §4.2 forbids other requests before it
        is accepted; a reconnect without reboot (boot=False) replays the queue at once.
        """
        await self._open(self._commands)
        if boot:
            await self.boot()
            if self.boot_status != "Accepted":
                return
        await self.flush()

    async def __aenter__(self) -> SimCharger:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for stop in self._meter_stops.values():
            stop.set()
        self._meter_stops.clear()
        await super().close()

    # -- charge point messages ---------------------------------------------------------------

    async def boot(self) -> dict[str, Any]:
        answer = await self._exchange(
            "BootNotification",
            {
                "chargePointVendor": self.vendor,
                "chargePointModel": self.model,
                "chargePointSerialNumber": self.charge_point_id[:25],
                "firmwareVersion": "1.0.0",
            },
        )
        self.boot_status = str(answer["status"])
        interval = int(answer.get("interval", 0))
        if interval > 0:
            self.state.change_configuration("HeartbeatInterval", str(interval))
        return answer

    async def heartbeat(self) -> dict[str, Any]:
        return await self._exchange("Heartbeat", {})

    async def status(
        self, connector_id: int, status: str, error_code: str = "NoError"
    ) -> dict[str, Any]:
        self.state.connector_status[connector_id] = status
        payload = {
            "connectorId": connector_id,
            "errorCode": error_code,
            "status": status,
            "timestamp": ocpp_timestamp(self._clock()),
        }
        return await self._exchange("StatusNotification", payload)

    async def authorize(self, id_tag: str) -> str:
        """The idTagInfo status the central system gave."""
        answer = await self._exchange("Authorize", {"idTag": id_tag})
        return str(answer["idTagInfo"]["status"])

    def authorize_locally(self, id_tag: str) -> bool:
        """The decision a charger takes from its local list while cut off from the server."""
        return self.state.authorize_locally(id_tag)

    async def start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int = 0,
        timestamp: datetime | None = None,
    ) -> int:
        """The transaction id; a negative placeholder while the start is still queued."""
        placeholder = self._next_placeholder
        self._next_placeholder -= 1
        transaction = Transaction(connector_id, placeholder, id_tag, meter_start, meter_start)
        self.state.transactions[connector_id] = transaction
        self.state.registers[connector_id] = meter_start
        payload = {
            "connectorId": connector_id,
            "idTag": id_tag,
            "meterStart": meter_start,
            "timestamp": ocpp_timestamp(timestamp or self._clock()),
        }
        if self.state.meter_interval_s > 0:
            stop = asyncio.Event()
            self._meter_stops[connector_id] = stop
            self.spawn(self._commands.meter_loop(transaction, stop), f"meter-{connector_id}")
        await self._transaction_message("StartTransaction", payload, placeholder)
        return self._resolved.get(placeholder, placeholder)

    async def meter_values(
        self,
        connector_id: int,
        transaction_id: int | None,
        wh: int,
        timestamp: datetime | None = None,
        extra_samples: bool = True,
        *,
        context: str = "Sample.Periodic",
        signed: str | None = None,
    ) -> dict[str, Any] | None:
        """The conf, or None when the message was queued for later delivery. `signed`: the
        meter's signed blob of this reading, sent beside it as a SignedData value."""
        payload: dict[str, Any] = {"connectorId": connector_id}
        self.state.registers[connector_id] = wh
        if transaction_id is not None:
            transaction_id = self._resolved.get(transaction_id, transaction_id)
            payload["transactionId"] = transaction_id
            running = self.state.transaction_by_id(transaction_id)
            if running is not None:
                running.meter_wh = wh
        payload["meterValue"] = [
            {
                "timestamp": ocpp_timestamp(timestamp or self._clock()),
                "sampledValue": sampled_values(wh, context=context, extra_samples=extra_samples)
                + ([] if signed is None else [signed_value(signed, context=context)]),
            }
        ]
        return await self._transaction_message("MeterValues", payload)

    async def stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp: datetime | None = None,
        reason: str = "Local",
        id_tag: str | None = None,
        transaction_data: bool = True,
        signed: str | None = None,
    ) -> dict[str, Any] | None:
        """The conf, or None when the message was queued for later delivery. `signed`: the
        meter's signed blob of the stop reading, in the Transaction.End transactionData."""
        transaction_id = self._resolved.get(transaction_id, transaction_id)
        stamp = ocpp_timestamp(timestamp or self._clock())
        running = self.state.transaction_by_id(transaction_id)
        payload: dict[str, Any] = {
            "transactionId": transaction_id,
            "meterStop": meter_stop,
            "timestamp": stamp,
            "reason": reason,
        }
        if id_tag is not None:
            payload["idTag"] = id_tag
        if transaction_data:
            data = []
            if running is not None:
                begin = sampled_values(
                    running.meter_start, context="Transaction.Begin", extra_samples=False
                )
                data.append({"timestamp": stamp, "sampledValue": begin})
            end = sampled_values(meter_stop, context="Transaction.End", extra_samples=False)
            if signed is not None:
                end.append(signed_value(signed, context="Transaction.End"))
            data.append({"timestamp": stamp, "sampledValue": end})
            payload["transactionData"] = data
        if running is not None:
            del self.state.transactions[running.connector_id]
            self.state.registers[running.connector_id] = meter_stop
            stop = self._meter_stops.pop(running.connector_id, None)
            if stop is not None:
                stop.set()
        return await self._transaction_message("StopTransaction", payload)

    # -- the offline queue -------------------------------------------------------------------

    async def _transaction_message(
        self, action: str, payload: dict[str, Any], placeholder: int | None = None
    ) -> dict[str, Any] | None:
        # Every transaction message goes through the queue, so one sent online can never
        # overtake an older one still waiting there.
        item = QueuedMessage(action, payload, placeholder)
        self._queue.append(item)
        if self.connected:
            await self.flush()
        return item.answer

    async def flush(self) -> int:
        """Deliver queued transaction messages in order, stopping at the first that fails.

        A lost connection or a timeout keeps the message for the next connect; a CallError
        counts as an attempt and after TransactionMessageAttempts the message is dropped
        (kept in `dropped`). Returns how many are still queued.
        """
        async with self._flush_lock:
            for _ in range(_MAX_FLUSH):
                item = self._queue.peek()
                if item is None or not self.connected:
                    break
                try:
                    answer = await self._exchange(item.action, item.payload)
                except (ChargerOffline, TimeoutError):
                    break
                except OCPPError:
                    item.attempts += 1
                    if item.attempts < self._max_attempts():
                        break
                    self.dropped.append(self._queue.pop())
                    continue
                self._queue.pop()
                item.answer = answer
                if item.placeholder is not None:
                    self._resolve(item.placeholder, int(answer["transactionId"]))
        return len(self._queue)

    def _resolve(self, placeholder: int, transaction_id: int) -> None:
        self._resolved[placeholder] = transaction_id
        self._queue.resolve(placeholder, transaction_id)
        self.state.rename_transaction(placeholder, transaction_id)

    def _max_attempts(self) -> int:
        try:
            return max(1, int(self.state.configuration.get("TransactionMessageAttempts", "3")))
        except ValueError:
            return 3

    async def retry_unanswered(self, times: int = 3) -> int:
        """Retry the queue head up to `times` rounds now; returns how many stay queued."""
        for _ in range(times):
            if not self._queue or not self.connected:
                break
            await self.flush()
        return len(self._queue)
