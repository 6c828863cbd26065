"""The connection side of the simulated charge point: websocket, reader task, calls, tasks.

Kept apart from the charger's behaviour so the latter reads as a list of OCPP messages.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl as ssl_module
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, validate_payload
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from cpo_gateway.sim.charger.link import (
    ChargePointLink,
    CommandHandler,
    FollowUpLink,
    cancel_and_wait,
    is_call_error,
)
from cpo_gateway.sim.charger.offline_queue import TRANSACTION_ACTIONS

log = structlog.get_logger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")
_HISTORY = 100


class SimChargerError(Exception):
    """The simulated charger cannot do what was asked (e.g. the server refused the subprotocol)."""


class ChargerOffline(SimChargerError, ConnectionError):
    """No connection, or it was lost before the answer arrived."""


@dataclass(frozen=True)
class SentMessage:
    """A transaction message as it went out, kept so it can be re-sent as a retry."""

    action: str
    payload: dict[str, Any]
    frame: str
    unique_id: str


class ChargerWire:
    """The websocket side of a simulated charger; a subclass names its OCPP version."""

    subprotocol: ClassVar[Subprotocol] = SUBPROTOCOL
    ocpp_version: ClassVar[str] = "1.6"
    transaction_actions: ClassVar[frozenset[str]] = TRANSACTION_ACTIONS

    def __init__(
        self,
        charge_point_id: str,
        url: str,
        *,
        password: str | None,
        ssl: ssl_module.SSLContext | None,
        call_timeout: float,
        ocpp_log_level: int | None,
    ) -> None:
        self.charge_point_id = charge_point_id
        self.url = url
        self.call_timeout = call_timeout
        self.answers: list[tuple[str, dict[str, Any]]] = []
        self.answered_at: list[float] = []  # epoch seconds of each answer, beside `answers`
        self.call_errors: list[tuple[str, str]] = []
        self.failures: list[BaseException] = []
        self.close_code: int | None = None  # the central system's, on the last connection
        self._password = password
        self._ssl = ssl
        self._history: deque[SentMessage] = deque(maxlen=_HISTORY)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws: ClientConnection | None = None
        self._link: FollowUpLink | None = None
        self._reader: asyncio.Task[None] | None = None
        self._logger = logging.getLogger("ocpp")
        if ocpp_log_level is not None:
            # The library logs every frame, idTags included, at INFO.
            self._logger.setLevel(ocpp_log_level)

    @property
    def connected(self) -> bool:
        return self._link is not None and self._reader is not None and not self._reader.done()

    def authorization_header(self) -> str | None:
        """HTTP Basic credentials as OCPP security profile 1 wants them (user = charger id)."""
        if self._password is None:
            return None
        token = f"{self.charge_point_id}:{self._password}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    def _make_link(self, ws: ClientConnection, handler: Any) -> FollowUpLink:
        """The library ChargePoint of this version that reads and answers the central system."""
        commands: CommandHandler = handler
        return ChargePointLink(
            self.charge_point_id,
            ws,
            commands,
            response_timeout=self.call_timeout,
            logger=self._logger,
        )

    async def _open(self, handler: Any) -> None:
        if self.connected:
            raise SimChargerError("already connected")
        header = self.authorization_header()
        ws = await connect(
            f"{self.url.rstrip('/')}/{self.charge_point_id}",
            subprotocols=[self.subprotocol],
            additional_headers={"Authorization": header} if header else None,
            ssl=self._ssl,
            open_timeout=self.call_timeout,
        )
        if ws.subprotocol != self.subprotocol:
            await ws.close()
            raise SimChargerError(f"server did not accept subprotocol {self.subprotocol}")
        link = self._make_link(ws, handler)
        self._ws, self._link = ws, link
        self.close_code = None
        self._reader = self.spawn(self._read(link), "reader")
        log.info("sim_charger.connected", charge_point_id=self.charge_point_id)

    async def _read(self, link: FollowUpLink) -> None:
        try:
            await link.start()
        except ConnectionClosed as closed:
            # 1012 (service restart) from a draining gateway: reconnect, maybe elsewhere.
            self.close_code = closed.rcvd.code if closed.rcvd is not None else None
            log.info(
                "sim_charger.disconnected",
                charge_point_id=self.charge_point_id,
                code=self.close_code,
            )

    async def disconnect(self) -> None:
        """Close the websocket; transactions keep running and their messages queue up."""
        ws, reader = self._ws, self._reader
        self._ws = self._link = None
        if ws is not None:
            await ws.close()
        if reader is not None:
            await asyncio.wait({reader})

    async def close(self) -> None:
        """Disconnect and cancel every task this charger started."""
        await self.disconnect()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                await cancel_and_wait(task)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a tracked task: kept until done, failures recorded, cancelled by close()."""
        task = asyncio.create_task(coro, name=f"sim-charger:{self.charge_point_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.failures.append(error)
            log.error(
                "sim_charger.task_failed",
                charge_point_id=self.charge_point_id,
                task=task.get_name(),
                exc_info=error,
            )

    async def _exchange(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one Call and return the conf payload; raises the CallError as OCPPError."""
        link = self._require_link()
        call = Call(str(uuid.uuid4()), action, payload)
        try:
            await validate_payload(call, self.ocpp_version)
        except OCPPError as error:
            # A malformed message from the simulator itself: never let a server see it, and
            # keep OCPPError meaning "the server answered with a CallError".
            raise SimChargerError(f"{action} payload invalid: {error}") from error
        if action in self.transaction_actions:
            self._history.append(SentMessage(action, dict(payload), call.to_json(), call.unique_id))
        response = await self._await_link(link, link.exchange(call))
        return self._settle(action, response)

    def _require_link(self) -> FollowUpLink:
        if self._link is None or not self.connected:
            raise ChargerOffline(self.charge_point_id)
        return self._link

    async def _await_link(self, link: FollowUpLink, exchange: Coroutine[Any, Any, Any]) -> Any:
        """Wait for an answer, or fail as soon as the connection drops instead of timing out."""
        reader = self._reader
        task = asyncio.create_task(exchange)
        try:
            waiting: set[asyncio.Future[Any]] = {task}
            if reader is not None:
                waiting.add(reader)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                raise ChargerOffline(f"{self.charge_point_id}: connection lost during the call")
            try:
                return task.result()
            except ConnectionClosed as error:
                raise ChargerOffline(f"{self.charge_point_id}: connection closed") from error
        finally:
            if not task.done():
                await cancel_and_wait(task)

    def _settle(self, action: str, response: Any) -> dict[str, Any]:
        if is_call_error(response):
            self.call_errors.append((action, str(response.error_code)))
            raise response.to_exception()
        payload: dict[str, Any] = response.payload
        self.answers.append((action, payload))
        self.answered_at.append(time.time())
        return payload

    async def replay_last(self, n: int = 1, *, same_id: bool = True) -> list[dict[str, Any]]:
        """Send the last n transaction messages again, as a charger that retries.

        With same_id the frames go out byte for byte (same message id); otherwise each gets a
        fresh message id. Returns the central system's answers in order.
        """
        replies: list[dict[str, Any]] = []
        for sent in list(self._history)[-n:] if n > 0 else []:
            link = self._require_link()
            if same_id:
                exchange = link.exchange_raw(sent.frame, sent.unique_id)
            else:
                exchange = link.exchange(Call(str(uuid.uuid4()), sent.action, sent.payload))
            response = await self._await_link(link, exchange)
            replies.append(self._settle(sent.action, response))
        return replies
