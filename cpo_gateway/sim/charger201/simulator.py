"""A simulated OCPP 2.0.1 charging station: a real network peer for the demo, the tests and
the benchmarks, beside the 1.6 `SimCharger` and with the same methods where they mean the same.

It connects like a station does (subprotocol `ocpp2.0.1`, HTTP Basic auth, optional TLS),
checks every message it sends and every answer it gets against the OCA 2.0.1 schemas of the
`ocpp` package, answers the CSMS's requests from its own state and, like real hardware, keeps
TransactionEvents in order while it cannot deliver them, replaying them with `offline: true`
and their original timestamps.

The 1.6 vocabulary of the shared API maps as the gateway's stations file does: a 1.6
connector N is EVSE N, connector 1; 1.6 statuses become 2.0.1 connector statuses (Charging is
Occupied); a transaction id is the station's own string, known at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl as ssl_module
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Literal

from ocpp.exceptions import OCPPError
from ocpp.messages import CallResult, validate_payload
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from cpo_gateway.sim.charger.link import FollowUpLink
from cpo_gateway.sim.charger.offline_queue import OfflineQueue, QueuedMessage
from cpo_gateway.sim.charger.state import ocpp_timestamp
from cpo_gateway.sim.charger.wire import ChargerOffline, ChargerWire, SimChargerError
from cpo_gateway.sim.charger201.commands import StationCommands
from cpo_gateway.sim.charger201.link import StationLink
from cpo_gateway.sim.charger201.state import (
    CONNECTOR_STATUS,
    STOPPED_REASON,
    StationState,
    Transaction201,
    meter_value,
)

__all__ = ["ChargerOffline", "SimCharger201", "SimChargerError"]

RemoteStartMode = Literal["accept", "reject", "ignore", "no-plug"]
_MAX_FLUSH = 10_000
CARD = "ISO14443"  # the IdTokenEnumType of an RFID card, the default token type
# The trigger reason an Ended event carries for each stop reason, unless the caller names one.
_STOP_TRIGGER = {
    "Remote": "RemoteStop",
    "Local": "StopAuthorized",
    "EVDisconnected": "EVCommunicationLost",
    "ImmediateReset": "ResetCommand",
    "DeAuthorized": "Deauthorized",
    "EnergyLimitReached": "EnergyLimitReached",
    "TimeLimitReached": "TimeLimitReached",
}


class SimCharger201(ChargerWire):
    """One OCPP 2.0.1 charging station. Use `async with` or call close(): it owns tasks."""

    subprotocol: ClassVar[Subprotocol] = Subprotocol("ocpp2.0.1")
    ocpp_version: ClassVar[str] = "2.0.1"
    transaction_actions: ClassVar[frozenset[str]] = frozenset({"TransactionEvent"})

    def __init__(
        self,
        charge_point_id: str,
        url: str,
        *,
        connectors: int = 2,
        password: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        vendor: str = "cpo-gateway-sim",
        model: str = "SimCharger201",
        meter_interval_s: float = 0,
        remote_start: RemoteStartMode = "accept",
        local_list_supported: bool = True,
        local_list_max_length: int = 50,
        local_list_capacity: int = 100_000,
        clock: Callable[[], datetime] | None = None,
        transaction_ids: Callable[[], str] | None = None,
        call_timeout: float = 30,
        strict_answers: bool = True,
        ocpp_log_level: int | None = logging.WARNING,
    ) -> None:
        """`connectors` is the number of EVSEs (one connector each); `strict_answers` turns a
        CSMS answer that breaks its schema into SimChargerError (else it is only recorded)."""
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
        self.strict_answers = strict_answers
        self.state = StationState(
            evses=connectors,
            local_list_supported=local_list_supported,
            items_per_message=local_list_max_length,
            local_list_capacity=local_list_capacity,
            meter_interval_s=meter_interval_s,
        )
        self.boot_status: str | None = None
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.received_at: list[float] = []  # epoch seconds of each request, beside `received`
        self.dropped: list[QueuedMessage] = []
        self.invalid_answers: list[tuple[str, str]] = []  # (action, the schema's complaint)
        self.availability: dict[int, str] = {}  # EVSE -> Operative / Inoperative, once changed
        self.boots = 0
        self._clock = clock or (lambda: datetime.now(UTC))
        self._new_transaction_id = transaction_ids or (lambda: str(uuid.uuid4()))
        self._commands = StationCommands(self)
        self._queue = OfflineQueue()
        self._seq_nos: dict[str, itertools.count[int]] = {}
        self._meter_stops: dict[int, asyncio.Event] = {}
        self._flush_lock = asyncio.Lock()

    # -- what tests and the demo read ----------------------------------------------------------

    @property
    def pending(self) -> int:
        """TransactionEvents not yet answered by the CSMS."""
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
    def transactions(self) -> dict[int, Transaction201]:
        """Running transactions by EVSE id."""
        return self.state.transactions

    def transaction_id(self, connector_id: int) -> str | None:
        """The station's id of the transaction running on EVSE `connector_id`."""
        running = self.state.transactions.get(connector_id)
        return running.transaction_id if running else None

    def queued_transaction_ids(self) -> set[str]:
        return {
            str(item.payload["transactionInfo"]["transactionId"])
            for item in self._queue.items()
            if item.action == "TransactionEvent"
        }

    # -- connection --------------------------------------------------------------------------

    def _make_link(self, ws: ClientConnection, handler: Any) -> FollowUpLink:
        return StationLink(
            self.charge_point_id,
            ws,
            handler,
            response_timeout=self.call_timeout,
            logger=self._logger,
        )

    async def connect(self, boot: bool = True, *, reason: str = "PowerUp") -> None:
        """Open the websocket, optionally boot, then deliver what was queued while offline.

        A station sends nothing but BootNotification until it is Accepted; a reconnect
        without reboot (boot=False) replays the queue at once.
        """
        await self._open(self._commands)
        if boot:
            await self.boot(reason=reason)
            if self.boot_status != "Accepted":
                return
        await self.flush()

    async def reboot(self) -> None:
        """What a Reset does: the connection drops, the station boots with RemoteReset."""
        await self.disconnect()
        await self.connect(reason="RemoteReset")

    async def __aenter__(self) -> SimCharger201:
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

    async def _exchange(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await super()._exchange(action, payload)
        try:
            await validate_payload(CallResult("-", answer, action), self.ocpp_version)
        except OCPPError as error:
            self.invalid_answers.append((action, str(error)))
            if self.strict_answers:
                raise SimChargerError(f"{action} answer breaks the schema: {error}") from error
        return answer

    async def send_raw(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one message as built by the caller (schema-checked), outside the queue: for
        events out of order or an Ended without its Started."""
        return await self._exchange(action, payload)

    # -- station messages --------------------------------------------------------------------

    async def boot(self, *, reason: str = "PowerUp") -> dict[str, Any]:
        station = {
            "model": self.model,
            "vendorName": self.vendor,
            "serialNumber": self.charge_point_id[:25],
            "firmwareVersion": "2.0.1-sim",
        }
        answer = await self._exchange(
            "BootNotification", {"chargingStation": station, "reason": reason}
        )
        self.boots += 1
        self.boot_status = str(answer["status"])
        interval = int(answer.get("interval", 0))
        if interval > 0:
            self.state.set_variable("OCPPCommCtrlr", "HeartbeatInterval", str(interval))
        return answer

    async def heartbeat(self) -> dict[str, Any]:
        return await self._exchange("Heartbeat", {})

    async def status(
        self, connector_id: int, status: str, error_code: str = "NoError", *, connector: int = 1
    ) -> dict[str, Any]:
        """StatusNotification of EVSE `connector_id`; 1.6 statuses are translated, and
        `error_code` is accepted for the shared API (2.0.1 reports errors as events)."""
        connector_status = CONNECTOR_STATUS.get(status, status)
        self.state.connector_status[(connector_id, connector)] = connector_status
        payload = {
            "timestamp": ocpp_timestamp(self._clock()),
            "connectorStatus": connector_status,
            "evseId": connector_id,
            "connectorId": connector,
        }
        return await self._exchange("StatusNotification", payload)

    async def authorize(self, id_tag: str, id_token_type: str = CARD) -> str:
        """The idTokenInfo status the CSMS gave."""
        answer = await self._exchange(
            "Authorize", {"idToken": {"idToken": id_tag, "type": id_token_type}}
        )
        return str(answer["idTokenInfo"]["status"])

    def authorize_locally(self, id_tag: str) -> bool:
        """The decision a station takes from its local list while cut off from the CSMS."""
        return self.state.authorize_locally(id_tag)

    async def notify_report(
        self, request_id: int, seq_no: int, report_data: list[dict[str, Any]], *, tbc: bool
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "requestId": request_id,
            "generatedAt": ocpp_timestamp(self._clock()),
            "seqNo": seq_no,
            "tbc": tbc,
        }
        if report_data:
            payload["reportData"] = report_data
        return await self._exchange("NotifyReport", payload)

    async def meter_values_idle(
        self, evse_id: int, wh: int, *, context: str = "Sample.Periodic"
    ) -> dict[str, Any]:
        """MeterValues outside a transaction (2.0.1 sends transaction meter values as events)."""
        stamp = ocpp_timestamp(self._clock())
        value = meter_value(wh, stamp, context=context, extra_samples=False)
        return await self._exchange("MeterValues", {"evseId": evse_id, "meterValue": [value]})

    # -- transactions ------------------------------------------------------------------------

    async def start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int = 0,
        timestamp: datetime | None = None,
        *,
        id_token_type: str = CARD,
        remote_start_id: int | None = None,
        trigger_reason: str = "Authorized",
    ) -> str:
        """TransactionEvent Started on EVSE `connector_id`; returns the station's transaction
        id (queued, and sent with `offline: true`, while the station is offline)."""
        transaction = Transaction201(
            transaction_id=self._new_transaction_id(),
            evse_id=connector_id,
            connector_id=1,
            id_token=id_tag,
            id_token_type=id_token_type,
            meter_start=meter_start,
            meter_wh=meter_start,
            remote_start_id=remote_start_id,
        )
        self.state.transactions[connector_id] = transaction
        self.state.registers[connector_id] = meter_start
        stamp = ocpp_timestamp(timestamp or self._clock())
        info: dict[str, Any] = {"chargingState": "Charging"}
        if remote_start_id is not None:
            info["remoteStartId"] = remote_start_id
        payload = self._event(
            "Started",
            transaction.transaction_id,
            trigger_reason,
            stamp,
            info=info,
            meter=[
                meter_value(meter_start, stamp, context="Transaction.Begin", extra_samples=False)
            ],
            evse={"id": connector_id, "connectorId": 1},
            id_token={"idToken": id_tag, "type": id_token_type},
        )
        if self.state.meter_interval_s > 0:
            stop = asyncio.Event()
            self._meter_stops[connector_id] = stop
            self.spawn(self._commands.meter_loop(transaction, stop), f"meter-{connector_id}")
        await self._transaction_message(payload)
        return transaction.transaction_id

    async def meter_values(
        self,
        connector_id: int,
        transaction_id: str | None,
        wh: int,
        timestamp: datetime | None = None,
        extra_samples: bool = True,
        *,
        context: str = "Sample.Periodic",
        trigger_reason: str = "MeterValuePeriodic",
    ) -> dict[str, Any] | None:
        """TransactionEvent Updated with the meter values (MeterValues without a transaction);
        the answer, or None when the event was queued for later delivery."""
        self.state.registers[connector_id] = wh
        if transaction_id is None:
            return await self.meter_values_idle(connector_id, wh, context=context)
        running = self.state.transaction_by_id(transaction_id)
        if running is not None:
            running.meter_wh = wh
        stamp = ocpp_timestamp(timestamp or self._clock())
        payload = self._event(
            "Updated",
            transaction_id,
            trigger_reason,
            stamp,
            info={"chargingState": "Charging"},
            meter=[meter_value(wh, stamp, context=context, extra_samples=extra_samples)],
        )
        return await self._transaction_message(payload)

    async def stop_transaction(
        self,
        transaction_id: str,
        meter_stop: int,
        timestamp: datetime | None = None,
        reason: str = "Local",
        id_tag: str | None = None,
        transaction_data: bool = True,
        *,
        trigger_reason: str | None = None,
    ) -> dict[str, Any] | None:
        """TransactionEvent Ended; the answer, or None when it was queued for later."""
        stopped = STOPPED_REASON.get(reason, reason)
        stamp = ocpp_timestamp(timestamp or self._clock())
        running = self.state.transaction_by_id(transaction_id)
        meter = None
        if transaction_data:
            meter = [meter_value(meter_stop, stamp, context="Transaction.End", extra_samples=False)]
        token = None
        if id_tag is not None:
            token_type = running.id_token_type if running is not None else CARD
            token = {"idToken": id_tag, "type": token_type}
        evse = None
        if running is not None:
            evse = {"id": running.evse_id, "connectorId": running.connector_id}
            del self.state.transactions[running.evse_id]
            self.state.registers[running.evse_id] = meter_stop
            stop = self._meter_stops.pop(running.evse_id, None)
            if stop is not None:
                stop.set()
        payload = self._event(
            "Ended",
            transaction_id,
            trigger_reason or _STOP_TRIGGER.get(stopped, "AbnormalCondition"),
            stamp,
            info={"stoppedReason": stopped, "chargingState": "EVConnected"},
            meter=meter,
            evse=evse,
            id_token=token,
        )
        return await self._transaction_message(payload)

    def _event(
        self,
        event_type: str,
        transaction_id: str,
        trigger_reason: str,
        timestamp: str,
        *,
        info: dict[str, Any],
        meter: list[dict[str, Any]] | None = None,
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        seq = self._seq_nos.setdefault(transaction_id, itertools.count())
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": timestamp,
            "triggerReason": trigger_reason,
            "seqNo": next(seq),
            "transactionInfo": {"transactionId": transaction_id, **info},
        }
        if not self.connected:
            payload["offline"] = True  # E04: the event happened while the station was offline
        if meter:
            payload["meterValue"] = meter
        if evse is not None:
            payload["evse"] = evse
        if id_token is not None:
            payload["idToken"] = id_token
        return payload

    # -- the offline queue -------------------------------------------------------------------

    async def _transaction_message(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        # Every event goes through the queue, so one sent online never overtakes an older one.
        item = QueuedMessage("TransactionEvent", payload)
        self._queue.append(item)
        if self.connected:
            await self.flush()
        return item.answer

    async def flush(self) -> int:
        """Deliver queued events in order, stopping at the first that fails.

        A lost connection or a timeout keeps the event for the next connect; a CallError
        counts as an attempt and after MessageAttemptsTransactionEvent the event is dropped
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
        return len(self._queue)

    def _max_attempts(self) -> int:
        return max(
            1, self.state.int_variable("OCPPCommCtrlr", "MessageAttemptsTransactionEvent", 3)
        )

    async def retry_unanswered(self, times: int = 3) -> int:
        """Retry the queue head up to `times` rounds now; returns how many stay queued."""
        for _ in range(times):
            if not self._queue or not self.connected:
                break
            await self.flush()
        return len(self._queue)
