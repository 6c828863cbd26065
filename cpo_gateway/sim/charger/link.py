"""One websocket connection of the simulated charge point, on the `ocpp` library's ChargePoint.

The library routes each incoming Call to an `@on` handler and sends its answer. Handlers here
only translate to and from the `CommandHandler` that owns the charger's state; anything that
must talk back to the central system is returned as a follow-up and started only after the
answer went out, because the library handles one message at a time and a call made inside a
handler would wait for an answer the reader cannot deliver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ocpp.charge_point import ChargePoint as BaseChargePoint
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, MessageType, unpack
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action

FollowUp = Callable[[], Coroutine[Any, Any, None]]
Reply = tuple[str, FollowUp | None]


class FollowUpHandler(Protocol):
    """What every version's link needs of the charger: a record and tracked follow-ups."""

    def record_received(self, action: str, payload: dict[str, Any]) -> None: ...
    def ignores(self, action: str) -> bool: ...
    def spawn_follow_up(self, follow_up: FollowUp, name: str) -> None: ...


class CommandHandler(FollowUpHandler, Protocol):
    """What the charger does with each central system command; answers from local state."""

    def remote_start(self, id_tag: str, connector_id: int | None) -> Reply: ...
    def remote_stop(self, transaction_id: int) -> Reply: ...
    def trigger(self, requested_message: str, connector_id: int | None) -> Reply: ...
    def send_local_list(
        self, list_version: int, update_type: str, entries: list[dict[str, Any]]
    ) -> str: ...
    def get_local_list_version(self) -> int: ...
    def get_configuration(self, keys: list[str] | None) -> dict[str, Any]: ...
    def change_configuration(self, key: str, value: str) -> str: ...
    def reserve_now(self, connector_id: int, id_tag: str, reservation_id: int) -> Reply: ...
    def cancel_reservation(self, reservation_id: int) -> Reply: ...


class FollowUpLink(BaseChargePoint):
    """The version-neutral part of a link: follow-ups after the answer, and raw exchanges.

    A version's link inherits this first and that version's library ChargePoint second, so
    the library routes and validates with the version's schemas.
    """

    def __init__(
        self,
        charge_point_id: str,
        connection: Any,
        handler: FollowUpHandler,
        *,
        response_timeout: float,
        logger: Any,
    ) -> None:
        super().__init__(charge_point_id, connection, response_timeout, logger)
        self._follow_ups: list[tuple[str, FollowUp]] = []
        self._base_handler = handler

    async def route_message(self, raw_msg: str) -> None:
        try:
            msg = unpack(raw_msg)
        except OCPPError:
            msg = None
        if msg is not None and msg.message_type_id == MessageType.Call:
            payload = msg.payload if isinstance(msg.payload, dict) else {}
            self._base_handler.record_received(str(msg.action), payload)
            if self._base_handler.ignores(str(msg.action)):
                return
        self._follow_ups.clear()
        await super().route_message(raw_msg)
        # The answer has been sent (or refused): now the follow-ups may talk to the server.
        pending, self._follow_ups = self._follow_ups, []
        for name, follow_up in pending:
            self._base_handler.spawn_follow_up(follow_up, name)

    async def exchange(self, call: Call) -> Any:
        """Send one Call frame and wait for the CallResult or CallError with its unique id.

        Uses the library's own call lock and response queue, so these calls and the library's
        `call()` never interleave on the wire (OCPP 1.6 allows one open Call per side).
        """
        async with self._call_lock:
            await self._send(call.to_json())
            return await self._get_specific_response(call.unique_id, self._response_timeout)

    async def exchange_raw(self, frame: str, unique_id: str) -> Any:
        """Re-send a frame byte for byte, as a charger that retries with the same message id."""
        async with self._call_lock:
            await self._send(frame)
            return await self._get_specific_response(unique_id, self._response_timeout)

    def _reply(self, reply: Reply, name: str) -> str:
        status, follow_up = reply
        if follow_up is not None:
            self._follow_ups.append((name, follow_up))
        return status


class ChargePointLink(FollowUpLink, ChargePoint):
    """The OCPP 1.6 link: the library's v16 ChargePoint with the charger's `@on` handlers."""

    def __init__(
        self,
        charge_point_id: str,
        connection: Any,
        handler: CommandHandler,
        *,
        response_timeout: float,
        logger: Any,
    ) -> None:
        super().__init__(
            charge_point_id,
            connection,
            handler,
            response_timeout=response_timeout,
            logger=logger,
        )
        self._handler = handler

    @on(Action.remote_start_transaction)
    def _on_remote_start(
        self, id_tag: str, connector_id: int | None = None, **_: Any
    ) -> call_result.RemoteStartTransaction:
        status = self._reply(self._handler.remote_start(id_tag, connector_id), "remote-start")
        return call_result.RemoteStartTransaction(status=status)

    @on(Action.remote_stop_transaction)
    def _on_remote_stop(self, transaction_id: int, **_: Any) -> call_result.RemoteStopTransaction:
        status = self._reply(self._handler.remote_stop(transaction_id), "remote-stop")
        return call_result.RemoteStopTransaction(status=status)

    @on(Action.trigger_message)
    def _on_trigger(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> call_result.TriggerMessage:
        reply = self._handler.trigger(requested_message, connector_id)
        return call_result.TriggerMessage(status=self._reply(reply, "trigger"))

    @on(Action.send_local_list)
    def _on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> call_result.SendLocalList:
        entries = local_authorization_list or []
        status = self._handler.send_local_list(list_version, update_type, entries)
        return call_result.SendLocalList(status=status)

    @on(Action.get_local_list_version)
    def _on_get_local_list_version(self, **_: Any) -> call_result.GetLocalListVersion:
        return call_result.GetLocalListVersion(list_version=self._handler.get_local_list_version())

    @on(Action.get_configuration)
    def _on_get_configuration(
        self, key: list[str] | None = None, **_: Any
    ) -> call_result.GetConfiguration:
        answer = self._handler.get_configuration(key)
        return call_result.GetConfiguration(
            configuration_key=answer["configurationKey"], unknown_key=answer.get("unknownKey")
        )

    @on(Action.change_configuration)
    def _on_change_configuration(
        self, key: str, value: str, **_: Any
    ) -> call_result.ChangeConfiguration:
        return call_result.ChangeConfiguration(
            status=self._handler.change_configuration(key, value)
        )

    @on(Action.reserve_now)
    def _on_reserve_now(
        self, connector_id: int, id_tag: str, reservation_id: int, **_: Any
    ) -> call_result.ReserveNow:
        reply = self._handler.reserve_now(connector_id, id_tag, reservation_id)
        return call_result.ReserveNow(status=self._reply(reply, "reserve-now"))

    @on(Action.cancel_reservation)
    def _on_cancel_reservation(
        self, reservation_id: int, **_: Any
    ) -> call_result.CancelReservation:
        reply = self._handler.cancel_reservation(reservation_id)
        return call_result.CancelReservation(status=self._reply(reply, "cancel-reservation"))

    @on(Action.change_availability)
    def _on_change_availability(self, **_: Any) -> call_result.ChangeAvailability:
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.reset)
    def _on_reset(self, **_: Any) -> call_result.Reset:
        return call_result.Reset(status="Accepted")

    @on(Action.unlock_connector)
    def _on_unlock_connector(self, **_: Any) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(status="Unlocked")


def is_call_error(message: Any) -> bool:
    return bool(message.message_type_id == MessageType.CallError)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel a task we own and wait until it has finished, whatever it raised."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved so asyncio does not warn about it later
