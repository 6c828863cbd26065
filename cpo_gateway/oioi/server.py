"""The OIOI endpoint (aiohttp): one POST route, dispatch on the body's single top-level key,
plus /healthz and /metrics for operations."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson
from aiohttp import web

from cpo_gateway import logs
from cpo_gateway.bridge.core_ports import EmpSide
from cpo_gateway.httpguard import GuardedListener, GuardedSite, ListenerLimits
from cpo_gateway.oioi import messages
from cpo_gateway.oioi.request_id import HEADER as REQUEST_ID
from cpo_gateway.oioi.request_id import request_id
from cpo_gateway.ratelimit import FailureLimiter

log = logs.get(__name__)
Health = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]
Metrics = Callable[[], Awaitable[str]]
# Larger bodies and whitelists are parsed in a worker thread: a million UIDs take seconds of
# CPU that must not stall chargers and other requests on the event loop.
# The classic Prometheus text format, which every scraper reads (prometheus_client's output).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INLINE_PARSE_BYTES = 256 * 1024
_INLINE_PARSE_UIDS = 10_000


@dataclass(frozen=True, slots=True)
class InboundPartner:
    name: str
    inbound_key: str
    partner_identifier: str


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


def _json(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class OioiServer:
    """The OIOI v4 listener EMPs call (`session-start`, `session-stop`, `rfid-post`).

    Owns the HTTP listener, the EMP key check and lockout, request ids and the rendering of
    OIOI results; every request body is validated here and reaches the core as typed values.
    It never talks to a charger or the store directly, and never answers success for
    something the core has not accepted.
    """

    def __init__(
        self,
        core: EmpSide,
        partners: Sequence[InboundPartner],
        *,
        host: str,
        port: int,
        path: str,
        max_body_bytes: int,
        health: Health | None,
        metrics: Metrics | None,
        limits: ListenerLimits | None = None,
    ) -> None:
        self._core = core
        self._partners = tuple(partners)
        self._host, self._port, self._path = host, port, path
        self._max_body = max_body_bytes
        self._health = health
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None
        self.listener = GuardedListener(limits or ListenerLimits(), "oioi")
        self.requests: dict[tuple[str, int], int] = {}  # (call, code) -> count
        self.accepting = True
        self.limiter = FailureLimiter(max_failures=20)
        self._calls = {
            "session-start": self._session_start,
            "session-stop": self._session_stop,
            "rfid-post": self._rfid_post,
        }

    @property
    def port(self) -> int:
        assert self._runner is not None
        addrs = self._runner.addresses
        return int(addrs[0][1])

    async def start(self) -> None:
        app = web.Application(
            client_max_size=self._max_body, middlewares=[self.listener.middleware]
        )
        app.router.add_post(self._path, self._handle)
        if self._health is not None:  # None: they are served on the admin listener only
            app.router.add_get("/healthz", self._healthz)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._metrics_view)
        # lingering_time=0: a body left unread (refused as too large, or before the key was
        # checked) closes the connection instead of being read and thrown away for seconds.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, lingering_time=0)
        await self._runner.setup()
        self._site = self.listener.site(self._runner, self._host, self._port)
        await self._site.start()

    async def stop_accepting(self) -> None:
        """New requests get 503 from here on; in-flight ones finish."""
        self.accepting = False

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # waits for in-flight handlers (shutdown_timeout)
            self._runner = None

    def _partner(self, header: str | None) -> InboundPartner:
        if not header or not header.startswith("key="):
            raise messages.OioiError.unauthorized("Missing 'Authorization: key=<api key>' header.")
        # Digests have one length: the comparison time tells neither the key nor its length,
        # and every partner is checked so it does not tell which one matched either.
        given = _digest(header[4:].strip())
        found = None
        for p in self._partners:
            if hmac.compare_digest(given, _digest(p.inbound_key)):
                found = p
        if found is None:
            raise messages.OioiError.unauthorized("Invalid API key.")
        return found

    def _authorized(self, request: web.Request) -> InboundPartner:
        """The partner whose key the request carries; a wrong key is limited per source.

        The key is checked before the limit: the check is a cheap digest compare, so the
        rightful EMP is served even from an address a stranger keeps failing from (a shared
        proxy or NAT). Only failing requests are limited, and the 429 answers only them.
        """
        source = request.remote or "?"
        try:
            return self._partner(request.headers.get("Authorization"))
        except messages.OioiError:
            blocked = self.limiter.blocked(f"ip:{source}")
            self.limiter.failed(f"ip:{source}")  # a guesser that keeps guessing stays limited
            if blocked:
                log.warning("security.oioi_rate_limited", source=source)
                raise messages.OioiError(
                    429, 210, "Too many failed requests; retry later."
                ) from None
            log.warning("security.oioi_auth_failed", source=source)
            raise

    async def _handle(self, request: web.Request) -> web.Response:
        """One request, every log line of it (the core's too) carrying its request id."""
        rid = request_id(request.headers.get(REQUEST_ID))
        with logs.bound(request_id=rid):
            response = await self._answer(request)
        response.headers[REQUEST_ID] = rid
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        call = "?"
        try:
            if not self.accepting:
                raise messages.OioiError.unavailable()
            partner = self._authorized(request)
            body = await self._body(request)
            if len(body) > _INLINE_PARSE_BYTES:
                call, obj = await asyncio.to_thread(messages.parse_envelope, body)
            else:
                call, obj = messages.parse_envelope(body)
            log.info("oioi.request", call=call, partner=partner.name)
            status, reply = await self._calls[call](partner, obj)
        except messages.OioiError as exc:
            status, reply = exc.http_status, exc.body()
            if exc.http_status >= 500:
                log.warning("oioi.unavailable", call=call)
            else:
                log.info("oioi.refused", call=call, status=status, message=exc.message)
        except Exception:
            log.exception("oioi.internal_error", call=call)
            err = messages.OioiError.internal()
            status, reply = err.http_status, err.body()
        result = reply.get("result")
        code = int(result.get("code", 0)) if isinstance(result, dict) else 0
        self.requests[(call, code)] = self.requests.get((call, code), 0) + 1
        response = _json(status, reply)
        if status == 408:
            response.force_close()  # the rest of that body is not read
        elif status == 503:
            response.headers["Retry-After"] = "5"
        elif status == 429:
            response.headers["Retry-After"] = "60"
        return response

    async def _body(self, request: web.Request) -> bytes:
        """The raw body, refused before reading when it cannot be UTF-8 JSON or is too large.

        A declared length over the limit is refused unread; a chunked body is read only up to
        the limit (aiohttp counts while reading) and then refused; a body not complete within
        the listener's body timeout gets 408 and the connection is closed.
        """
        charset = request.charset
        if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise messages.OioiError.bad_request(
                f"body: expected UTF-8 JSON, got charset {charset!r}"
            )
        too_large = messages.OioiError(413, 230, f"body is larger than {self._max_body} bytes")
        if request.content_length is not None and request.content_length > self._max_body:
            raise too_large
        within_s = self.listener.limits.body_timeout_s
        try:
            async with asyncio.timeout(within_s):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
        except TimeoutError:
            self.listener.timed_out["body"] += 1
            raise messages.OioiError(
                408, 230, f"body: not complete within {within_s:g} s"
            ) from None

    async def _session_start(
        self, p: InboundPartner, obj: dict[str, object]
    ) -> tuple[int, dict[str, object]]:
        req = messages.parse_session_start(obj)
        result = await self._core.remote_start(p.name, req.user, req.evse_id)
        extra = {"session-start": {"session-id": result.session_id, "is-stoppable": True}}
        if result.detail:
            log.info("oioi.session_start", outcome=result.outcome.value, detail=result.detail)
        return messages.outcome_response(result.outcome, extra, result.detail)

    async def _session_stop(
        self, p: InboundPartner, obj: dict[str, object]
    ) -> tuple[int, dict[str, object]]:
        req = messages.parse_session_stop(obj)
        result = await self._core.remote_stop(p.name, req.evse_id, req.session_id)
        if result.detail:
            log.info("oioi.session_stop", outcome=result.outcome.value, detail=result.detail)
        return messages.outcome_response(result.outcome, detail=result.detail)

    async def _rfid_post(
        self, p: InboundPartner, obj: dict[str, object]
    ) -> tuple[int, dict[str, object]]:
        rfids = obj.get("rfids")
        if isinstance(rfids, list) and len(rfids) > _INLINE_PARSE_UIDS:
            req = await asyncio.to_thread(messages.parse_rfid_post, obj)
        else:
            req = messages.parse_rfid_post(obj)
        if not hmac.compare_digest(req.partner_identifier.encode(), p.partner_identifier.encode()):
            raise messages.OioiError.forbidden(
                "rfid-post.partner-identifier: not a partner identifier of this API key"
            )
        replaced = await self._core.set_whitelist(p.name, req.uids)
        return 200, messages.success_body({"rfid": {"processed": replaced.new}})

    async def _healthz(self, request: web.Request) -> web.Response:
        assert self._health is not None
        ok, detail = await self._health()
        status = ("degraded" if detail.get("degraded") else "ok") if ok else "unhealthy"
        return _json(200 if ok else 503, {"status": status, **detail})

    async def _metrics_view(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        text = await self._metrics()
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})
