"""An aiohttp listener's connections behind a watchdog and caps (the OIOI port, the console).

aiohttp closes an idle keep-alive connection, but it has no deadline for a request's headers
and its default keep-alive is an hour: 3,000 sockets that never sent a request, or 300 that
sent their headers a byte at a time, were all kept, and with a low open-files limit the EMP
endpoint and new charger handshakes stopped answering. So every accepted socket is wrapped:

- its request headers must be complete within `header_timeout_s` of connecting, or of the
  first byte of a request after a response; an idle keep-alive connection is closed after
  `keepalive_timeout_s`; a body must arrive within `body_timeout_s` (a handler that reads a
  body reads it under that deadline: the OIOI one answers 408);
- `ConnectionLimiter` caps concurrent connections per source address and in total (the total
  lowered to a share of the process's open-files limit, so chargers keep their margin); at a
  cap the connection idle longest makes room, so strangers' idle sockets never keep out the
  EMP.

A timed-out or recycled connection is aborted (no lingering for a peer that does not read).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler

from cpo_gateway import logs
from cpo_gateway.connlimit import ConnectionLimiter, descriptor_budget

log = logs.get(__name__)


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keepalive_timeout_s: float = 75.0
    max_connections_per_source: int = 100
    max_connections: int = 1000


class Phase(enum.Enum):
    HEADERS = "headers"  # waiting for a request's headers to be complete
    REQUEST = "request"  # a handler runs: the body deadline is the handler's
    IDLE = "idle"  # keep-alive: waiting for the first byte of the next request


class GuardedListener:
    """The caps, the deadlines and their counters for one listening port."""

    def __init__(self, limits: ListenerLimits, name: str) -> None:
        self.limits = limits
        total = descriptor_budget(limits.max_connections)
        if total < limits.max_connections:
            log.warning(
                "listener.connection_cap_lowered",
                listener=name,
                configured=limits.max_connections,
                cap=total,
                hint="raise the open-files limit (LimitNOFILE=) to allow the configured cap",
            )
        self.limiter: ConnectionLimiter[GuardedConnection] = ConnectionLimiter(
            name, per_source=min(limits.max_connections_per_source, total), total=total
        )
        self.timed_out: dict[str, int] = {p.value: 0 for p in (Phase.HEADERS, Phase.IDLE)}
        self.timed_out["body"] = 0
        self._by_transport: dict[asyncio.BaseTransport, GuardedConnection] = {}

    @property
    def open(self) -> int:
        return self.limiter.open

    def connection(self, transport: asyncio.BaseTransport | None) -> GuardedConnection | None:
        return self._by_transport.get(transport) if transport is not None else None

    def site(self, runner: web.BaseRunner, host: str, port: int) -> GuardedSite:
        return GuardedSite(runner, self, host, port)

    @property
    def middleware(self) -> Middleware:
        @web.middleware
        async def watch(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = self.connection(request.transport)
            if conn is not None:
                conn.request_started()
            try:
                return await handler(request)
            finally:
                if conn is not None:
                    conn.request_done()

        return watch

    def _opened(self, conn: GuardedConnection, transport: asyncio.BaseTransport) -> None:
        self._by_transport[transport] = conn

    def _closed(self, conn: GuardedConnection, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None and self._by_transport.get(transport) is conn:
            del self._by_transport[transport]
        self.limiter.release(conn)


class GuardedConnection(asyncio.Protocol):
    """One accepted socket: forwards to aiohttp's RequestHandler, enforces the deadlines."""

    __slots__ = (
        "_deadline",
        "_inner",
        "_listener",
        "_loop",
        "_phase",
        "_server",
        "_timer",
        "_transport",
    )

    def __init__(self, listener: GuardedListener, server: web.Server) -> None:
        self._listener = listener
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._inner: RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._phase = Phase.HEADERS
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        admission = self._listener.limiter.admit(self, source)
        if admission.recycle is not None:
            admission.recycle.abort()
        if not admission.admitted:
            self._transport = None
            transport.abort()
            return
        self._listener._opened(self, transport)
        self._expect(Phase.HEADERS, self._listener.limits.header_timeout_s)
        self._inner = self._server()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._phase is Phase.IDLE:
            self._expect(Phase.HEADERS, self._listener.limits.header_timeout_s)
        self._inner.data_received(data)

    def eof_received(self) -> None:
        if self._inner is not None:
            self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._listener._closed(self, self._transport)
        self._transport = None
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # --- the request cycle (from the app's middleware) -------------------------------------
    def request_started(self) -> None:
        self._phase = Phase.REQUEST
        self._listener.limiter.busy(self)

    def request_done(self) -> None:
        self._listener.limiter.idle(self, served=True)
        self._expect(Phase.IDLE, self._listener.limits.keepalive_timeout_s)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # --- the watchdog ----------------------------------------------------------------------
    def _expect(self, phase: Phase, within_s: float) -> None:
        self._phase = phase
        self._deadline = self._loop.time() + within_s
        if self._timer is None:  # an earlier timer re-arms itself for the later deadline
            self._timer = self._loop.call_at(self._deadline, self._check)
        elif self._timer.when() > self._deadline:
            self._timer.cancel()
            self._timer = self._loop.call_at(self._deadline, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._phase is Phase.REQUEST or self._transport is None:
            return
        now = self._loop.time()
        if now < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check)
            return
        self._listener.timed_out[self._phase.value] += 1
        self.abort()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections are GuardedConnections."""

    __slots__ = ("_host", "_listener", "_port")

    def __init__(
        self, runner: web.BaseRunner, listener: GuardedListener, host: str, port: int
    ) -> None:
        super().__init__(runner)
        self._listener = listener
        self._host, self._port = host, port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GuardedConnection(self._listener, server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
