"""The sandbox EMP: a real OIOI v4 peer for `cpo-gateway demo`, the tests and the benchmarks.

Server side (`SandboxEmp`) receives what the gateway posts (station-post, connector-post-status,
session-post, rfid-verify), records every request and can be told to misbehave. Client side
(`EmpClient`) sends what an EMP sends the gateway (session-start, session-stop, rfid-post).

It is written as an outside party would write it: aiohttp and orjson only, none of the
gateway's OIOI code, so both sides do not share a misreading of the spec.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from cpo_gateway.sim.emp.client import EmpClient, curl_example
from cpo_gateway.sim.emp.faults import Fault, FaultPlan
from cpo_gateway.sim.emp.ledger import EmpLedger
from cpo_gateway.sim.emp.wire import (
    MAX_BODY_BYTES,
    WireError,
    bad_request,
    check_authorization,
    parse_envelope,
    peek_call,
    result_body,
)

__all__ = ["EmpClient", "Recorded", "SandboxEmp", "curl_example"]

RECORDED_HEADERS = ("Authorization", "Content-Type", "User-Agent", "X-Request-Id")
_POLL_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as received and the answer it got. `call` is "" when the body had none."""

    call: str
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float
    answered_status: int
    answered_code: int | None


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    code: int | None
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)


class SandboxEmp:
    """An OIOI v4 EMP endpoint on a real socket. Start it, point the gateway at `url`."""

    def __init__(
        self,
        *,
        api_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/api/v4/request",
        clock: Callable[[], float] = time.time,
        verify_codes: Mapping[str, int] | None = None,
        require_station: bool = True,
    ) -> None:
        self._api_key = api_key
        self._host = host
        self._port = port
        self._path = path
        self._clock = clock
        self._ledger = EmpLedger(
            verify_codes=dict(verify_codes or {}), require_station=require_station
        )
        self._faults = FaultPlan()
        self._delay = 0.0
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.requests: list[Recorded] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("SandboxEmp already started")
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(self._path, self._handle)
        # A short shutdown timeout: slow answers are woken by `_closing`, nothing else lingers.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        self._runner = runner
        self._closing.clear()
        try:
            await self._listen()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._closing.set()
        runner, self._runner, self._site = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._site is None and self._port == 0:
            raise RuntimeError("SandboxEmp.url is known only after start()")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}{self._path}"

    @property
    def listening(self) -> bool:
        return self._site is not None

    async def refuse(self) -> None:
        """Stop listening and drop open connections: the EMP is down, connects are refused."""
        site, self._site = self._site, None
        if site is not None:
            await site.stop()
        server = self._runner.server if self._runner is not None else None
        if server is not None:
            # Keep-alive connections would otherwise keep working while "down".
            for connection in server.connections:
                connection.force_close()

    async def accept(self) -> None:
        """Listen again on the same port after `refuse()`."""
        if self._runner is None:
            raise RuntimeError("SandboxEmp is not started")
        if self._site is None:
            await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._site = site
        if self._port == 0:
            self._port = int(self._runner.addresses[-1][1])

    # -- state ---------------------------------------------------------------------------

    @property
    def stations(self) -> dict[str, dict[str, Any]]:
        return self._ledger.stations

    @property
    def statuses(self) -> dict[str, str]:
        return self._ledger.statuses

    @property
    def cdrs(self) -> dict[str, dict[str, Any]]:
        return self._ledger.cdrs

    @property
    def duplicates(self) -> int:
        """session-posts whose session-id had already been stored."""
        return self._ledger.duplicates

    @property
    def verify_codes(self) -> dict[str, int]:
        """UID -> rfid-verify result code (0 accepted, 192 locked, ...); others get 191."""
        return self._ledger.verify_codes

    @verify_codes.setter
    def verify_codes(self, codes: Mapping[str, int]) -> None:
        self._ledger.verify_codes = dict(codes)

    @property
    def require_station(self) -> bool:
        """Answer connector-post-status with 181 for EVSEs of no posted, non-deleted station."""
        return self._ledger.require_station

    @require_station.setter
    def require_station(self, value: bool) -> None:
        self._ledger.require_station = value

    def calls(self, name: str) -> list[dict[str, Any]]:
        """The bodies of every recorded request of that call, in the order answered."""
        return [r.body for r in self.requests if r.call == name]

    # -- faults --------------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        retry_after: str | None = None,
        code: int = 100,
        body: bytes | None = None,
    ) -> None:
        """The next n requests, whatever they are, get this answer (before any checks)."""
        self._faults.add(Fault(status, code, retry_after, body), n)

    def fail_call(
        self,
        call_name: str,
        status: int = 500,
        code: int = 100,
        n: int = 1,
        *,
        retry_after: str | None = None,
        body: bytes | None = None,
    ) -> None:
        """The next n authorised, well-formed requests of `call_name` get this answer."""
        self._faults.add(Fault(status, code, retry_after, body), n, call=call_name)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._delay = 0.0

    def set_delay(self, seconds: float) -> None:
        """Answer every request this much later (the request is processed at once)."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError("delay must be a finite number >= 0")
        self._delay = seconds

    # -- waiting -------------------------------------------------------------------------

    # A timeout argument rather than asyncio.timeout(): on expiry the message must say what was
    # awaited and what the EMP received, which only this method knows.
    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Poll `predicate` every 10 ms until it holds; TimeoutError naming it otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for _ in range(max(1, math.ceil(timeout / _POLL_SECONDS)) + 1):
            if predicate():
                return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(_POLL_SECONDS)
        if predicate():
            return
        name = getattr(predicate, "__qualname__", repr(predicate))
        raise TimeoutError(
            f"sandbox EMP: condition {name} still false after {timeout}s; {self.summary()}"
        )

    def summary(self, last: int = 10) -> str:
        """The last requests as `call status/code`, for failure messages."""
        if not self.requests:
            return "no requests received"
        shown = ", ".join(
            f"{r.call or '?'} {r.answered_status}/{r.answered_code}" for r in self.requests[-last:]
        )
        return f"{len(self.requests)} requests received, last: {shown}"

    # -- the endpoint --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        received_at = self._clock()
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raw = b""
            reply = self._error(bad_request("body: larger than the limit"))
        else:
            reply = self._reply(request, raw)
        call, body = peek_call(raw)
        headers = {k: v for k in RECORDED_HEADERS if (v := request.headers.get(k)) is not None}
        # Recorded when processed, before any delay: the state and the record agree, and a
        # client that times out on a slow answer still left its mark (as with a real EMP).
        self.requests.append(Recorded(call, body, headers, received_at, reply.status, reply.code))
        if self._delay > 0:
            await self._sleep(self._delay)
        return web.Response(
            status=reply.status,
            body=reply.payload,
            headers=reply.headers,
            content_type="application/json",
        )

    def _reply(self, request: web.Request, raw: bytes) -> _Reply:
        fault = self._faults.take_any()
        if fault is not None:
            return self._faulted(fault)
        try:
            check_authorization(request.headers.get("Authorization"), self._api_key)
            call, body = parse_envelope(raw)
            fault = self._faults.take_for(call)
            if fault is not None:
                return self._faulted(fault)
            answer = self._ledger.answer(call, body)
        except WireError as error:
            return self._error(error)
        return _Reply(200, answer.code, result_body(answer.code, answer.message))

    @staticmethod
    def _error(error: WireError) -> _Reply:
        return _Reply(error.http_status, error.code, result_body(error.code, error.message))

    @staticmethod
    def _faulted(fault: Fault) -> _Reply:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        payload = fault.body if fault.body is not None else result_body(fault.code, "Injected.")
        return _Reply(fault.status, fault.answered_code, payload, headers)

    async def _sleep(self, seconds: float) -> None:
        # Woken early by stop() so a slow answer never holds up shutdown.
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            pass
