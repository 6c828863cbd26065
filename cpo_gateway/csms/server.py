"""The OCPP websocket server: identity and auth before the upgrade, a registry of chargers,
typed commands (the core's ChargerControl), presence, and the local admin channel.

Presence: a charger whose socket closes is handed to the core at once (the core posts
Offline only after its grace period). A charger that sends nothing for more than three
heartbeat intervals is closed with 1001, which comes to the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import http
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from cpo_gateway import logs, runtime
from cpo_gateway.bridge.core_ports import ChargerSide
from cpo_gateway.config import OcppConfig
from cpo_gateway.csms import v201_security
from cpo_gateway.csms.admin import AdminServer, Route, SocketPathTooLong
from cpo_gateway.csms.certgate import ClientCertGate
from cpo_gateway.csms.clientcert import CertRefused, ClientCertPolicy
from cpo_gateway.csms.connected import ChargerRegistry
from cpo_gateway.csms.connection import FIRST_MESSAGE_GRACE_S, ChargerConnection
from cpo_gateway.csms.frames import Call
from cpo_gateway.csms.handlers import Handlers
from cpo_gateway.csms.handlers201 import Handlers201
from cpo_gateway.csms.passwords import parse_basic, verify_password
from cpo_gateway.csms.refusals import Refusal, Refusals
from cpo_gateway.csms.security import CertificateService
from cpo_gateway.csms.tlsgate import TlsGate
from cpo_gateway.ratelimit import LoginLimiter
from cpo_gateway.tasks import TaskSet
from cpo_gateway.timing import NO_TIMINGS, Timing, Timings

log = logs.get(__name__)
SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")  # our order of preference: 2.0.1 when offered
VERSIONS = {"ocpp2.0.1": "2.0.1", "ocpp1.6": "1.6"}
SILENT_HEARTBEATS = 3  # heartbeat intervals without a frame before a charger counts as gone
CLOSE_SILENT = 1001
# asyncio accepts up to `backlog` connections each time the listening socket is ready and
# starts them all in the next loop iteration: 100 handshakes at once stall every other
# charger during a reconnect storm. Accept a few at a time; the kernel holds the rest.
ACCEPT_BATCH = 8
LISTEN_QUEUE = 4096  # the kernel caps it at net.core.somaxconn


class CsmsServer:
    """The OCPP side: the websocket listener chargers connect to, as their central system.

    Owns the listener, the handshake (path, subprotocol, TLS, Basic auth, rate limits), one
    ChargerConnection per charger and the takeover of a charger that reconnects. It turns
    OCPP messages into the core's terms and back; it never decides what a message means for
    a session or an EMP (the core does), and never answers a transaction message before the
    core has committed it.
    """

    def __init__(
        self,
        core: ChargerSide,
        registry: ChargerRegistry,
        tasks: TaskSet,
        ocpp: OcppConfig,
        *,
        id_tag_expiry_s: int,
        ssl_context: ssl.SSLContext | None = None,
        admin_socket: Path | None = None,
        call_timings: Timings = NO_TIMINGS,
        clock: Callable[[], float] = time.time,
        client_certs: ClientCertPolicy | None = None,
        certificates: CertificateService | None = None,
        admin_route: Route | None = None,
    ) -> None:
        """`ocpp`: the [ocpp] table (listener, heartbeats, pings, frame and call limits, the
        schema check, the proxies trusted to forward a client certificate and its header);
        `id_tag_expiry_s`: how long a charger may keep an idTag verdict ([sessions]);
        `call_timings`: seconds from a charger's Call to our answer, by action; `clock`:
        the wall clock the answers' timestamps come from; `client_certs`: the checks of
        security profile 3 (None: no profile-3 charger can connect); `certificates`: signs
        the chargers' CSRs (None: SignCertificate is refused); `admin_route`: carries out
        the admin channel's requests (None: this registry does)."""
        self._core = core
        self.registry = registry
        self.connections = registry.connections
        self._tasks = tasks
        self._host, self._port, self._path = ocpp.host, ocpp.port, ocpp.path.rstrip("/")
        self._allow_unknown = ocpp.allow_unknown_chargers
        self._ping = (ocpp.ping_interval_s, ocpp.ping_timeout_s)
        self._max_frame = ocpp.max_frame_bytes
        self._compression = ocpp.compression
        self._call_timeout_s = ocpp.call_timeout_s
        self._open_timeout_s = ocpp.open_timeout_s  # closes handshakes that never complete
        if ssl_context is not None and ssl_context.minimum_version < ssl.TLSVersion.TLSv1_2:
            ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security profile 2
        self._silence_s = float(SILENT_HEARTBEATS * ocpp.heartbeat_interval_s)
        self._admin_path = admin_socket
        self._admin_route = admin_route  # None: this registry carries out admin requests
        self.admin: AdminServer | None = None
        self._watch: asyncio.Task[None] | None = None
        self.handlers = Handlers(
            core,
            heartbeat_interval_s=ocpp.heartbeat_interval_s,
            id_tag_expiry_s=id_tag_expiry_s,
            clock=clock,
            validate_schemas=ocpp.validate_schemas,
            certificates=certificates,
        )
        self._certificates = certificates
        self.handlers201 = Handlers201(
            core,
            heartbeat_interval_s=ocpp.heartbeat_interval_s,
            id_tag_expiry_s=id_tag_expiry_s,
            clock=clock,
            validate_schemas=ocpp.validate_schemas,
        )
        v201_security.register(self.handlers201, certificates)
        registry.use_addresses(core.address_of)
        self._server: Server | None = None
        self._verified: dict[tuple[str, str], str] = {}  # (cp, sha256(pw)) -> hash it matched
        self.auth_failures = 0
        self.takeovers = 0  # connected chargers whose socket a new connection replaced
        self.limiter = LoginLimiter()
        self.refusals = Refusals()
        # TLS is started per connection (tlsgate.py), so a failed handshake is a refusal too.
        self.tls = (
            TlsGate(ssl_context, self.refusals, tasks, timeout_s=ocpp.open_timeout_s)
            if ssl_context is not None
            else None
        )
        self._call_timings = call_timings
        self.client_certs = ClientCertGate(client_certs, ocpp.client_certs, self.refusals)
        self._timing_by_label: dict[str, Timing] = {}  # labels() takes a lock: once per label

    @property
    def proxy_headers_ignored(self) -> int:
        """Certificate headers from peers not trusted to set them."""
        return self.client_certs.proxy_headers_ignored

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        tuned = runtime.tuning_enabled()
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._process_request,
            subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS],
            select_subprotocol=self._select_subprotocol,
            open_timeout=self._open_timeout_s,
            ping_interval=self._ping[0],
            ping_timeout=self._ping[1],
            max_size=self._max_frame,
            max_queue=16,
            compression="deflate" if self._compression else None,
            create_connection=self.tls.connection_class() if self.tls is not None else None,
            backlog=ACCEPT_BATCH if tuned else LISTEN_QUEUE,
        )
        for listening in self._server.sockets if tuned else ():
            _deepen_queue(listening)
        self._watch = self._tasks.service(self._watch_silence(), name="csms-silence-check")
        if self._admin_path is not None:
            try:
                await self.open_admin(self._admin_path)
            except SocketPathTooLong as exc:
                # Chargers matter more than the operator's shortcut: run on without it.
                log.error("admin.unavailable", error=str(exc))

    async def open_admin(self, path: Path) -> None:
        """Listen for operator commands on a unix socket (see admin.py); closed by close()."""
        admin = AdminServer(self.registry, path, route=self._admin_route)
        await admin.start()
        self.admin = admin

    async def close(self, code: int = 1012) -> None:
        """Stop accepting, close every charger with `code` (1012: service restart), wait."""
        if self._watch is not None:
            self._tasks.retire(self._watch)
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        if self._server is None:
            return
        self._server.close(close_connections=False)
        await asyncio.gather(
            *(c.close(code, "gateway restarting") for c in list(self.connections.values())),
            return_exceptions=True,
        )
        await self._server.wait_closed()

    async def close_removed(self) -> int:
        """Close chargers the catalogue no longer knows (after a reload); returns how many.
        Unknown chargers that are allowed to connect stay."""
        if self._allow_unknown:
            return 0
        gone = [c for cp, c in self.connections.items() if not self._core.is_known_charger(cp)]
        for conn in gone:
            log.info("charger.removed", charge_point_id=conn.charge_point_id)
        await asyncio.gather(
            *(c.close(1000, "removed from the configuration") for c in gone),
            return_exceptions=True,
        )
        return len(gone)

    # --- handshake -----------------------------------------------------------------------------
    def _charge_point_id(self, path: str) -> str | None:
        prefix = self._path + "/"
        if not path.startswith(prefix):
            return None
        cp_id = path[len(prefix) :].split("?", 1)[0]
        return cp_id if cp_id and "/" not in cp_id and len(cp_id) <= 48 else None

    def _select_subprotocol(
        self, conn: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        for ours in SUBPROTOCOLS:
            if ours in offered:
                return Subprotocol(ours)
        return None

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        source = _source(conn)
        cp_id = self._charge_point_id(request.path)
        if cp_id is None:
            self.refusals.refuse(
                Refusal.BAD_PATH, source, source=source, path=request.path.split("?", 1)[0][:80]
            )
            return conn.respond(
                http.HTTPStatus.NOT_FOUND, f"connect to {self._path}/<charge point id>\n"
            )
        offered = [
            p.strip()
            for h in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in h.split(",")
        ]
        if not any(p in SUBPROTOCOLS for p in offered):
            self.refusals.refuse(
                Refusal.SUBPROTOCOL,
                cp_id,
                charge_point_id=cp_id,
                source=source,
                offered=",".join(offered)[:100],
            )
            return conn.respond(
                http.HTTPStatus.BAD_REQUEST,
                f"no supported OCPP subprotocol offered; supported: {', '.join(SUBPROTOCOLS)}\n",
            )
        known = self._core.is_known_charger(cp_id)
        if not known and not self._allow_unknown:
            self.refusals.refuse(Refusal.UNKNOWN_ID, cp_id, charge_point_id=cp_id, source=source)
            return conn.respond(http.HTTPStatus.NOT_FOUND, "unknown charge point\n")
        profile = self._core.security_profile(cp_id)
        via_proxy = self.client_certs.from_proxy(source, request)
        if profile >= 2 and not via_proxy and conn.transport.get_extra_info("ssl_object") is None:
            self.refusals.refuse(Refusal.TLS_REQUIRED, cp_id, charge_point_id=cp_id, source=source)
            return conn.respond(http.HTTPStatus.FORBIDDEN, "this charge point must use TLS\n")
        if profile == 3:
            # The certificate is the credential (no Basic auth); without one, a password
            # does not get a profile-3 charger in on a weaker profile.
            refused = self.client_certs.judge(conn, request, cp_id, via_proxy)
            return None if refused is None else self._cert_refused(conn, cp_id, source, refused)
        stored = await self._core.password_hash(cp_id)
        if profile >= 1 or stored:
            sent = request.headers.get_all("Authorization")
            header = sent[0] if len(sent) == 1 else None  # twice: neither is believed
            # A credential verified before passes even while strangers fail for this id: no
            # failure limit may lock out the rightful charger (and this check costs no scrypt).
            if self._known_good(cp_id, header, stored):
                return None
            if self.limiter.blocked(source, cp_id):
                self.auth_failures += 1
                self.refusals.refuse(
                    Refusal.RATE_LIMITED, cp_id, source, charge_point_id=cp_id, source=source
                )
                response = conn.respond(
                    http.HTTPStatus.TOO_MANY_REQUESTS, "too many failed logins\n"
                )
                response.headers["Retry-After"] = "60"
                return response
            problem = (
                f"Authorization header sent {len(sent)} times"
                if len(sent) > 1
                else await self._check_password(cp_id, header, stored)
            )
            if problem:
                self.auth_failures += 1
                self.limiter.failed(source, cp_id)
                self.refusals.refuse(
                    Refusal.AUTH_FAILED,
                    cp_id,
                    problem,
                    charge_point_id=cp_id,
                    source=source,
                    reason=problem,
                )
                response = conn.respond(http.HTTPStatus.UNAUTHORIZED, "authentication failed\n")
                response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
                return response
        return None

    def _cert_refused(
        self, conn: ServerConnection, cp_id: str, source: str, refused: CertRefused
    ) -> Response:
        self.auth_failures += 1
        self.refusals.refuse(
            Refusal(refused.problem.value),
            cp_id,
            charge_point_id=cp_id,
            source=source,
            reason=refused.detail,
            security_profile=3,
            **refused.seen,
        )
        return conn.respond(http.HTTPStatus.FORBIDDEN, "client certificate refused\n")

    def _known_good(self, cp_id: str, header: str | None, stored: str | None) -> bool:
        creds = parse_basic(header)
        if creds is None or not stored or creds[0] != cp_id:
            return False
        key = (cp_id, hashlib.sha256(creds[1].encode()).hexdigest())
        return self._verified.get(key) == stored

    async def _check_password(
        self, cp_id: str, header: str | None, stored: str | None
    ) -> str | None:
        creds = parse_basic(header)
        if creds is None:
            return "no basic auth header"
        user, password = creds
        if user != cp_id:
            return "username is not the charge point id"
        if not stored:
            return "no password set for this charge point"
        key = (cp_id, hashlib.sha256(password.encode()).hexdigest())
        if self._verified.get(key) == stored:
            return None
        # scrypt is deliberately slow: keep it off the event loop.
        ok = await asyncio.to_thread(verify_password, password, stored)
        if not ok:
            return "wrong password"
        self._verified[key] = stored
        return None

    # --- connections ---------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        cp_id = self._charge_point_id(ws.request.path if ws.request else "")
        if cp_id is None:
            return
        version = VERSIONS.get(ws.subprotocol or "", "1.6")
        conn = ChargerConnection(
            cp_id,
            ws,
            self.handlers201.dispatch if version == "2.0.1" else self.handlers.dispatch,
            version=version,
            call_timeout_s=self._call_timeout_s,
            greeting_grace_s=min(FIRST_MESSAGE_GRACE_S, self._call_timeout_s),
            after_reply=self._after_reply,
            answered=self._answered,
        )
        old = self.connections.get(cp_id)
        self.connections[cp_id] = conn
        if old is not None:
            # The new socket wins (a charger that lost its connection comes back before the
            # old one times out), but it may as well be a stranger with the same id: with
            # security profile 0 nothing proves who is who. A security event either way.
            self.takeovers += 1
            log.warning(
                "security.charger_takeover",
                charge_point_id=cp_id,
                old_source=_source(old.ws),
                new_source=_source(ws),
                security_profile=self._core.security_profile(cp_id),
            )
            self._tasks.spawn(
                old.close(1000, "replaced by a new connection"), name=f"close-old-{cp_id}"
            )
        self._core.charger_connected(cp_id)
        log.info("charger.connected", charge_point_id=cp_id, subprotocol=ws.subprotocol)
        self._tasks.spawn(self._after_connect(conn), name=f"after-connect-{cp_id}")
        try:
            await conn.run()
        finally:
            # A newer connection may have replaced this one: never touch it.
            if self.connections.get(cp_id) is conn:
                del self.connections[cp_id]
                self._core.charger_disconnected(cp_id)
                log.info("charger.disconnected", charge_point_id=cp_id, code=ws.close_code)

    async def _watch_silence(self) -> None:
        period = min(max(self._silence_s / 4, 0.05), 60.0)
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - self._silence_s
            for cp_id, conn in list(self.connections.items()):
                if conn.last_seen < cutoff and conn.ws.state is State.OPEN:
                    log.warning(
                        "charger.silent",
                        charge_point_id=cp_id,
                        silent_s=round(time.monotonic() - conn.last_seen, 1),
                    )
                    self._tasks.spawn(
                        conn.close(CLOSE_SILENT, "silent for too long"),
                        name=f"close-silent-{cp_id}",
                    )

    def _answered(self, action: str, seconds: float) -> None:
        label = action if self.handlers201.handles(action) else self.handlers.label(action)
        timing = self._timing_by_label.get(label)
        if timing is None:
            timing = self._timing_by_label[label] = self._call_timings.labels(label)
        timing.observe(seconds)

    def _after_reply(self, conn: ChargerConnection, call: Call) -> None:
        """After an accepted boot has been answered: the list (its statuses come by themselves)."""
        if call.action == "SignCertificate" and self._certificates is not None:
            self._tasks.spawn(
                self._certificates.deliver(conn.charge_point_id),
                name=f"certificate-signed-{conn.charge_point_id}",
            )
        if call.action == "BootNotification" and conn.booted:
            self._tasks.spawn(
                self._core.push_local_list(conn.charge_point_id),
                name=f"locallist-push-{conn.charge_point_id}",
            )

    async def _after_connect(self, conn: ChargerConnection) -> None:
        """A charger that booted brings its statuses; one that reconnected without booting (its
        first message is anything else) or stays silent owes a resync: statuses and the list."""
        await conn.wait_greeted()
        if (
            conn.ws.state is not State.OPEN
            or self.connections.get(conn.charge_point_id) is not conn
        ):
            return
        cp_id = conn.charge_point_id
        if conn.v201:
            open_here = await self._core.open_charger_keys(cp_id)
            await self.registry.v201.ask_open_transactions(conn, open_here)
        if conn.first_action == "BootNotification":
            return
        log.info("charger.resync", charge_point_id=cp_id, first_message=conn.first_action)
        await self.registry.trigger_status(cp_id)
        await self._core.push_local_list(cp_id)


def _source(conn: ServerConnection) -> str:
    peer = conn.remote_address
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def _deepen_queue(listening: socket.socket) -> None:
    """Listen again with a deep queue: asyncio's accept batch stays small, and a storm of
    connects waits in the kernel instead of being dropped (a dropped SYN costs the charger
    a second or more)."""
    with socket.fromfd(listening.fileno(), listening.family, listening.type) as dup:
        dup.listen(LISTEN_QUEUE)
