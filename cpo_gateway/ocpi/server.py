"""The OCPI listener (aiohttp): versions, version details, credentials, and the routes of
every functional module the gateway serves as a CPO.

Behind the transport middleware (envelope, ids, routing headers, counts) an authentication
step finds the calling partner by its credentials token and puts a `Caller` on the request
(`caller(request)`): a module handler never looks at a token. Rules (transport_and_format):
no or an unknown token is 401; a one-time token A reaches only versions and credentials,
and so does a token of a handshake still under way; on a functional module the
OCPI-from-* party must be one of the caller's own (403 otherwise), OCPI-to-* must be us.

A functional module is an `OcpiModule`: its identifier and interface role (listed in our
version details) and a function adding its routes under ``{base}/2.2.1/{identifier}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from cpo_gateway import logs
from cpo_gateway.bridge.links import LinkState, PartnerLink
from cpo_gateway.httpguard import GuardedListener, GuardedSite, ListenerLimits
from cpo_gateway.ocpi import transport
from cpo_gateway.ocpi.registration import Registrar, parties_of
from cpo_gateway.ocpi.transport import (
    CONFIGURATION_MODULES,
    OcpiError,
    OcpiStatus,
    Party,
    RequestCounts,
    ocpi_json_response,
    read_json,
    token_candidates,
)
from cpo_gateway.ocpi.versions import module_url, our_details, our_versions, version_url
from cpo_gateway.ratelimit import FailureLimiter

log = logs.get(__name__)
DEFAULT_PATH = "/ocpi/cpo"


@dataclass(frozen=True, slots=True)
class Caller:
    """The partner a request comes from, as its token says."""

    partner: str
    link: PartnerLink
    parties: frozenset[Party]  # its own country_code/party_id pairs, from its credentials
    with_token_a: bool  # the one-time token: only versions and credentials

    def owns(self, country_code: str, party_id: str) -> bool:
        return Party(country_code, party_id) in self.parties

    def require_own(self, country_code: str, party_id: str) -> Party:
        """A Client Owned Object URL's {country_code}/{party_id} must be one of the caller's
        parties: otherwise 404 (transport_and_format, Client Owned Object Push, Errors: the
        objects of others are not there for this client)."""
        party = Party.parse(country_code, party_id, "path.")
        if party not in self.parties:
            raise OcpiError(
                OcpiStatus.CLIENT_ERROR, f"path: {party} is not a party of yours", http_status=404
            )
        return party


CALLER = web.RequestKey("ocpi_caller", Caller)


def caller(request: web.Request) -> Caller:
    """The authenticated caller of a request that reached a module handler."""
    return request[CALLER]


class OcpiModule(Protocol):
    identifier: str
    role: str  # SENDER or RECEIVER: the interface the CPO implements

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        """Add the module's routes; `prefix` is ``{base path}/2.2.1/{identifier}``."""
        ...


class OcpiServer:
    """The OCPI 2.2.1 listener partners call (see the module docstring)."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        host: str,
        port: int,
        base_url: str,
        ours: Party,
        modules: Sequence[OcpiModule] = (),
        max_body_bytes: int = 16 * 1024 * 1024,
        limits: ListenerLimits | None = None,
    ) -> None:
        self._registrar = registrar
        self._host, self._port = host, port
        self._configured_base = base_url.rstrip("/")
        self._path = urlsplit(base_url).path.rstrip("/") if base_url else DEFAULT_PATH
        self.ours = ours
        self._modules = tuple(modules)
        self._max_body = max_body_bytes
        self.counts = RequestCounts()
        self.listener = GuardedListener(limits or ListenerLimits(), "ocpi")
        self.limiter = FailureLimiter(max_failures=20)
        self.accepting = True
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None

    @property
    def registrar(self) -> Registrar:
        return self._registrar

    @property
    def port(self) -> int:
        assert self._runner is not None
        return int(self._runner.addresses[0][1])

    @property
    def base_url(self) -> str:
        """`[ocpi] base_url`, or (when empty) the bound address: for loopback and tests."""
        if self._configured_base:
            return self._configured_base
        port = self.port if self._runner is not None else self._port
        return f"http://{self._host}:{port}{self._path}"

    async def start(self) -> None:
        app = web.Application(
            client_max_size=self._max_body,
            middlewares=[
                self.listener.middleware,
                transport.middleware(self.counts, self.ours),
                self._authenticate,
            ],
        )
        p = self._path
        app.router.add_get(f"{p}/versions", self._versions)
        app.router.add_get(version_url(p), self._details)
        creds = module_url(p, "credentials")
        app.router.add_get(creds, self._credentials_get)
        app.router.add_post(creds, self._credentials_post)
        app.router.add_put(creds, self._credentials_put)
        app.router.add_delete(creds, self._credentials_delete)
        for m in self._modules:
            m.add_routes(app.router, module_url(p, m.identifier))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, lingering_time=0)
        await self._runner.setup()
        self._site = self.listener.site(self._runner, self._host, self._port)
        await self._site.start()

    async def stop_accepting(self) -> None:
        self.accepting = False

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- authentication ----------------------------------------------------------------
    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.accepting:
            raise OcpiError(OcpiStatus.SERVER_ERROR, "shutting down, retry later", 503)
        source = f"ip:{request.remote or '?'}"
        try:
            found = await self._registrar.caller(
                token_candidates(request.headers.get("Authorization"))
            )
            if found is None:
                raise OcpiError.unauthorized("Authorization: unknown credentials token")
        except OcpiError:
            blocked = self.limiter.blocked(source)
            self.limiter.failed(source)
            log.warning("security.ocpi_auth_failed", source=request.remote, limited=blocked)
            if blocked:
                raise OcpiError(
                    OcpiStatus.CLIENT_ERROR, "too many failed requests, retry later", 429
                ) from None
            raise
        link, with_token_a = found
        module = transport.module_of(request.path)
        if module not in CONFIGURATION_MODULES and (
            with_token_a or link.state is not LinkState.REGISTERED
        ):
            raise OcpiError.unauthorized(
                "Authorization: this token serves only versions and credentials until the "
                "registration is complete"
            )
        who = Caller(link.partner, link, parties_of(link), with_token_a)
        if module not in CONFIGURATION_MODULES:
            transport.check_from(request, who.parties)
        request[CALLER] = who
        with logs.bound(partner=link.partner):
            return await handler(request)

    # --- versions ----------------------------------------------------------------------
    async def _versions(self, request: web.Request) -> web.Response:
        return ocpi_json_response(our_versions(self.base_url))

    async def _details(self, request: web.Request) -> web.Response:
        details = our_details(self.base_url, [(m.identifier, m.role) for m in self._modules])
        return ocpi_json_response(details.render())

    # --- credentials -------------------------------------------------------------------
    async def _credentials_get(self, request: web.Request) -> web.Response:
        who = caller(request)
        token = who.link.token_in if who.link.state is LinkState.REGISTERED else None
        if token is None:
            raise OcpiError.unauthorized("Authorization: not registered yet")
        return ocpi_json_response(self._registrar.identity.credentials(token).render())

    async def _credentials_post(self, request: web.Request) -> web.Response:
        who = caller(request)
        if not who.with_token_a:
            raise _not_allowed("POST", "already registered or registering: use PUT to update")
        body = await read_json(request)
        ours = await self._registrar.accept(who.link, body, update=False)
        return ocpi_json_response(ours.render())

    async def _credentials_put(self, request: web.Request) -> web.Response:
        who = caller(request)
        if who.with_token_a or who.link.state is not LinkState.REGISTERED:
            raise _not_allowed("PUT", "not registered: POST your credentials first")
        body = await read_json(request)
        ours = await self._registrar.accept(who.link, body, update=True)
        return ocpi_json_response(ours.render())

    async def _credentials_delete(self, request: web.Request) -> web.Response:
        who = caller(request)
        if who.with_token_a or who.link.state is not LinkState.REGISTERED:
            raise _not_allowed("DELETE", "not registered")
        await self._registrar.unregister(who.link)
        return ocpi_json_response()


def _not_allowed(method: str, why: str) -> OcpiError:
    return OcpiError(OcpiStatus.CLIENT_ERROR, f"method: {method} not allowed, {why}", 405)
