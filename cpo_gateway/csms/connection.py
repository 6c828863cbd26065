"""One charger's websocket: the receive loop, our outgoing Calls, and replies.

Calls from the charger are handled in order by one worker task, apart from the receive loop,
so the charger's answers to our commands are never stuck behind a slow handler. At most one
Call of ours is in flight per charger (OCPP-J); others wait their turn.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from cpo_gateway import logs
from cpo_gateway.bridge.model import CommandResult, CommandStatus
from cpo_gateway.csms.frames import (
    Call,
    CallError,
    CallResult,
    ErrorCode,
    FrameError,
    PayloadError,
    encode_call,
    encode_error,
    encode_frame_error,
    encode_result,
    parse_frame,
)
from cpo_gateway.csms.v16_commands import read_call_error, read_command_status

log = logs.get(__name__)

Handler = Callable[["ChargerConnection", Call], Awaitable[dict[str, object]]]


class HandlerError(Exception):
    """A handler could not do its job (e.g. persisting failed): the charger gets a CallError."""

    def __init__(self, code: ErrorCode, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


class ChargerConnection:
    def __init__(
        self,
        charge_point_id: str,
        ws: ServerConnection,
        dispatch: Handler,
        *,
        call_timeout_s: float,
        max_queue: int = 64,
    ) -> None:
        self.charge_point_id = charge_point_id
        self.ws = ws
        self._dispatch = dispatch
        self._call_timeout_s = call_timeout_s
        self._inbox: asyncio.Queue[Call] = asyncio.Queue(max_queue)
        self._pending: dict[str, asyncio.Future[CallResult | CallError]] = {}
        self._call_lock = asyncio.Lock()
        self.booted = False
        self.last_seen = time.monotonic()
        self.config_cache: dict[str, str] = {}

    async def run(self) -> None:
        worker = asyncio.create_task(self._work(), name=f"ocpp-worker-{self.charge_point_id}")
        try:
            async for message in self.ws:
                await self._receive(message)
        except ConnectionClosed:
            pass
        finally:
            # Let Calls already received finish (their data may be mid-commit), then stop.
            await self._inbox.join()
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the charger disconnected"))

    async def _receive(self, message: str | bytes) -> None:
        # Any frame proves the charger alive (the silence check reads this), answers included.
        self.last_seen = time.monotonic()
        try:
            frame = parse_frame(message)
        except FrameError as exc:
            log.warning(
                "ocpp.bad_frame", charge_point_id=self.charge_point_id, error=exc.description
            )
            reply = encode_frame_error(exc)
            if reply is not None:
                await self._send(reply)
            return
        if isinstance(frame, Call):
            await self._inbox.put(frame)  # bounded: a flooding charger waits, memory does not grow
            return
        fut = self._pending.get(frame.unique_id)
        if fut is not None and not fut.done():
            fut.set_result(frame)
        else:
            log.warning(
                "ocpp.unexpected_reply",
                charge_point_id=self.charge_point_id,
                unique_id=frame.unique_id,
            )

    async def _work(self) -> None:
        while True:
            call = await self._inbox.get()
            try:
                await self._answer(call)
            finally:
                self._inbox.task_done()

    async def _answer(self, call: Call) -> None:
        try:
            payload = await self._dispatch(self, call)
            reply = encode_result(call.unique_id, payload)
        except PayloadError as exc:
            log.warning(
                "ocpp.bad_payload",
                charge_point_id=self.charge_point_id,
                action=call.action,
                error=exc.description,
            )
            reply = encode_error(call.unique_id, exc.error_code, exc.description, exc.details)
        except HandlerError as exc:
            reply = encode_error(call.unique_id, exc.code, exc.description)
        except Exception:
            log.exception(
                "ocpp.handler_failed", charge_point_id=self.charge_point_id, action=call.action
            )
            reply = encode_error(call.unique_id, ErrorCode.INTERNAL_ERROR, "internal error")
        await self._send(reply)

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            log.info("ocpp.reply_lost", charge_point_id=self.charge_point_id)

    @property
    def busy(self) -> bool:
        """Whether a Call of ours is out (or being sent) on this connection."""
        return self._call_lock.locked()

    async def call(
        self, action: str, payload: dict[str, object], timeout_s: float | None = None
    ) -> CommandResult:
        """Send a Call to the charger and read its answer as a CommandResult.

        One Call at a time (OCPP-J): a command waits for the one before it, at most
        `timeout_s`, and then at most `timeout_s` for its own answer."""
        timeout_s = timeout_s or self._call_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._call_lock.acquire()
        except TimeoutError:
            return CommandResult(
                CommandStatus.TIMEOUT,
                f"{action} waited {timeout_s} s behind an earlier command to this charger",
            )
        try:
            unique_id = str(uuid.uuid4())
            fut: asyncio.Future[CallResult | CallError] = asyncio.get_running_loop().create_future()
            self._pending[unique_id] = fut
            try:
                await self.ws.send(encode_call(unique_id, action, payload))
                async with asyncio.timeout(timeout_s):
                    answer = await fut
            except TimeoutError:
                return CommandResult(
                    CommandStatus.TIMEOUT, f"no answer to {action} in {timeout_s} s"
                )
            except (ConnectionClosed, ConnectionError):
                return CommandResult(CommandStatus.OFFLINE, "the charger disconnected")
            finally:
                self._pending.pop(unique_id, None)
        finally:
            self._call_lock.release()
        if isinstance(answer, CallError):
            return read_call_error(answer)
        return read_command_status(action, answer.payload)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)
