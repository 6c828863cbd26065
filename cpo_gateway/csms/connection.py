"""One charger's websocket: the receive loop, our outgoing Calls, and replies.

Calls from the charger are handled in order by one worker task, apart from the receive loop,
so the charger's answers to our commands are never stuck behind a slow handler. At most one
Call of ours is in flight per charger (OCPP-J); others wait their turn.

Nothing is sent to a charger before its first message on the connection has been answered
(a charger still booting refuses or ignores Calls), or before a grace has passed for one that
stays silent. Urgent commands (those a partner waits for: remote start and stop) go ahead of
routine ones (status triggers, configuration reads, local lists) waiting for the slot, and a
routine Call still unanswered when an urgent one waits gives way after PREEMPT_AFTER_S: our
own housekeeping must never make a healthy charger look unreachable to a partner.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from cpo_gateway import logs
from cpo_gateway.bridge.model import CommandResult, CommandStatus, ConnectorState
from cpo_gateway.csms.codes import respell
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
from cpo_gateway.csms.v201_commands import read_command_status as read_command_status201

log = logs.get(__name__)

Handler = Callable[["ChargerConnection", Call], Awaitable[dict[str, object]]]
Replied = Callable[["ChargerConnection", Call], None]
Answered = Callable[[str, float], None]  # (action, seconds from receipt to our answer)
# A charger that has said nothing this long after connecting gets our Calls anyway.
FIRST_MESSAGE_GRACE_S = 5.0
# How long a routine Call may still wait for its answer once an urgent command waits: healthy
# chargers answer within a second; one that does not is not worth a partner's deadline.
PREEMPT_AFTER_S = 1.0


class _GaveWay(Exception):
    """A routine Call stopped waiting for its answer so that an urgent command could go."""


class CallSlot:
    """One Call of ours at a time; urgent waiters are served before routine ones.

    It starts closed (held by nobody's Call): open() lets the first waiters in, urgent first."""

    def __init__(self, on_urgent_wait: Callable[[], None]) -> None:
        self._held = True
        self._open = False
        self._waiters: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}
        self._on_urgent_wait = on_urgent_wait

    @property
    def held(self) -> bool:
        return self._held

    def open(self) -> None:
        if not self._open:
            self._open = True
            self.release()

    @property
    def urgent_waiting(self) -> bool:
        return any(not f.done() for f in self._waiters[True])

    async def acquire(self, urgent: bool) -> None:
        if not self._held:
            self._held = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters[urgent]
        queue.append(fut)
        if urgent:
            self._on_urgent_wait()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as the waiter gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
            raise

    def release(self) -> None:
        for urgent in (True, False):
            queue = self._waiters[urgent]
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)  # the slot passes on: it stays held
                    return
        self._held = False


# Routine Calls that may give way: they only read or ask, so abandoning one changes nothing
# at the charger. A SendLocalList is never abandoned: the charger may be writing the list, and
# a second Call meanwhile is what OCPP-J forbids and strict firmware refuses.
MAY_GIVE_WAY = frozenset(
    {"TriggerMessage", "GetConfiguration", "GetLocalListVersion", "GetVariables"}
    | {"GetTransactionStatus"}
)


@dataclass(slots=True)
class _InFlight:
    answer: asyncio.Future[CallResult | CallError]
    urgent: bool
    sent_at: float
    action: str = ""


class HandlerError(Exception):
    """A handler could not do its job (e.g. persisting failed): the charger gets a CallError."""

    def __init__(self, code: ErrorCode, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


class ChargerConnection:
    """One connected charger: its websocket, the Calls it sends us and the Calls we send it.

    Owns the receive loop, the dispatch of each inbound Call to its handler, the single
    outbound Call in flight (the rest queue behind it) and the deadlines of both. It never
    drops a charger's Call unanswered while the socket is up, and never has two of our Calls
    outstanding at once (OCPP-J allows one).
    """

    def __init__(
        self,
        charge_point_id: str,
        ws: ServerConnection,
        dispatch: Handler,
        *,
        call_timeout_s: float,
        max_queue: int = 64,
        greeting_grace_s: float = FIRST_MESSAGE_GRACE_S,
        after_reply: Replied | None = None,
        answered: Answered | None = None,
        version: str = "1.6",
    ) -> None:
        """`version`: the OCPP version the subprotocol chose ("1.6" or "2.0.1"): it spells
        the CallError codes (codes.py) and picks how answers to our Calls are read."""
        self.charge_point_id = charge_point_id
        self.version = version
        self.v201 = version == "2.0.1"
        # 2.0.1: remoteStartId -> the idToken of our RequestStartTransaction, to bind the
        # Started event that names it; and each connector's running transaction (by key).
        self.remote_starts: dict[int, str] = {}
        self.running: dict[int, str] = {}
        self.transactions: dict[str, tuple[int, int]] = {}  # key -> (our id, connector)
        # The chargingState last fed to the status engine per connector of a running
        # transaction: an unchanged one is not written again (bounded like `running`).
        self.charging_states: dict[int, ConnectorState] = {}
        self.ws = ws
        self._dispatch = dispatch
        self._call_timeout_s = call_timeout_s
        self._inbox: asyncio.Queue[tuple[Call, float]] = asyncio.Queue(max_queue)
        self._pending: dict[str, asyncio.Future[CallResult | CallError]] = {}
        self._slot = CallSlot(self._urgent_waits)
        self._in_flight: _InFlight | None = None
        self._greeting_grace_s = greeting_grace_s
        self._greeted = asyncio.Event()
        self._after_reply = after_reply
        self._answered = answered
        self.first_action: str | None = None  # the action of the charger's first Call
        self.booted = False
        self.last_seen = time.monotonic()
        self.config_cache: dict[str, str] = {}

    @property
    def greeted(self) -> bool:
        """Whether Calls may go to the charger (its first message answered, or grace over)."""
        return self._greeted.is_set()

    def _greet(self) -> None:
        self._greeted.set()
        self._slot.open()

    async def wait_greeted(self) -> None:
        """Until Calls may go to the charger; also returns once the connection has ended."""
        await self._greeted.wait()

    async def run(self) -> None:
        worker = asyncio.create_task(self._work(), name=f"ocpp-worker-{self.charge_point_id}")
        grace = asyncio.get_running_loop().call_later(self._greeting_grace_s, self._greet)
        try:
            async for message in self.ws:
                await self._receive(message)
        except ConnectionClosed:
            pass
        finally:
            grace.cancel()
            self._greet()  # whoever waits finds the connection closed
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
            reply = encode_frame_error(exc, self.version)
            if reply is not None:
                await self._send(reply)
            return
        if isinstance(frame, Call):
            if self.first_action is None:
                self.first_action = frame.action
            # With its time of receipt: the latency a charger sees includes the wait in line.
            await self._inbox.put(
                (frame, time.perf_counter())
            )  # bounded: a flooding charger waits, memory does not grow
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
            call, received = await self._inbox.get()
            try:
                await self._answer(call, received)
            finally:
                self._inbox.task_done()

    async def _answer(self, call: Call, received: float) -> None:
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
            code = respell(exc.error_code, self.version)
            reply = encode_error(call.unique_id, code, exc.description, exc.details)
        except HandlerError as exc:
            reply = encode_error(call.unique_id, respell(exc.code, self.version), exc.description)
        except Exception:
            log.exception(
                "ocpp.handler_failed", charge_point_id=self.charge_point_id, action=call.action
            )
            reply = encode_error(
                call.unique_id, ErrorCode.INTERNAL_ERROR, "internal error"
            )  # same in both
        await self._send(reply)
        if self._answered is not None:
            self._answered(call.action, time.perf_counter() - received)
        # Only now may our own Calls go: they follow the answer to the charger's first Call.
        self._greet()
        if self._after_reply is not None:
            self._after_reply(self, call)

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            log.info("ocpp.reply_lost", charge_point_id=self.charge_point_id)

    @property
    def busy(self) -> bool:
        """Whether a Call of ours is out (or being sent) on this connection."""
        return self.greeted and self._slot.held

    async def call(
        self,
        action: str,
        payload: dict[str, object],
        timeout_s: float | None = None,
        *,
        urgent: bool = False,
    ) -> CommandResult:
        """Send a Call to the charger and read its answer as a CommandResult.

        One Call at a time (OCPP-J): a command waits until the charger has spoken first and
        for the one before it, at most `timeout_s`, and then at most `timeout_s` for its own
        answer. `urgent` commands (a partner waits for them) go first and make a routine Call
        still unanswered give way (module docstring)."""
        timeout_s = timeout_s or self._call_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._slot.acquire(urgent)  # closed until the charger has greeted
        except TimeoutError:
            return CommandResult(
                CommandStatus.TIMEOUT,
                f"{action} waited {timeout_s} s behind an earlier command to this charger",
            )
        loop = asyncio.get_running_loop()
        try:
            unique_id = str(uuid.uuid4())
            fut: asyncio.Future[CallResult | CallError] = loop.create_future()
            self._pending[unique_id] = fut
            try:
                await self.ws.send(encode_call(unique_id, action, payload))
                self._in_flight = _InFlight(fut, urgent, loop.time(), action)
                if not urgent and self._slot.urgent_waiting:
                    self._urgent_waits()
                async with asyncio.timeout(timeout_s):
                    answer = await fut
            except TimeoutError:
                return CommandResult(
                    CommandStatus.TIMEOUT, f"no answer to {action} in {timeout_s} s"
                )
            except _GaveWay:
                log.info("ocpp.call_gave_way", charge_point_id=self.charge_point_id, action=action)
                return CommandResult(
                    CommandStatus.TIMEOUT,
                    f"no answer to {action} in {PREEMPT_AFTER_S} s while an urgent command waited",
                )
            except (ConnectionClosed, ConnectionError):
                return CommandResult(CommandStatus.OFFLINE, "the charger disconnected")
            finally:
                self._in_flight = None
                self._pending.pop(unique_id, None)
                if not fut.done():
                    fut.cancel()  # a late give-way must not land on a future nobody reads
        finally:
            self._slot.release()
        if isinstance(answer, CallError):
            return read_call_error(answer)
        if self.v201:
            return read_command_status201(action, answer.payload)
        return read_command_status(action, answer.payload)

    def _urgent_waits(self) -> None:
        """An urgent command waits for the slot: a routine Call out gives way soon."""
        flight = self._in_flight
        if (
            flight is None
            or flight.urgent
            or flight.action not in MAY_GIVE_WAY
            or flight.answer.done()
        ):
            return
        delay = max(0.0, flight.sent_at + PREEMPT_AFTER_S - asyncio.get_running_loop().time())
        asyncio.get_running_loop().call_later(delay, _give_way, flight.answer)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)


def _give_way(answer: asyncio.Future[CallResult | CallError]) -> None:
    if not answer.done():
        answer.set_exception(_GaveWay())
