"""The operators' console (aiohttp + jinja2): server-rendered pages, actions as POSTed forms,
live charger and connector rows over Server-Sent Events, /metrics and /healthz.

An adapter like csms/ and oioi/: it reads and acts only through its port (console/port.py).
Login is required for every page and action; every POST carries the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cpo_gateway import logs
from cpo_gateway.console.actions import ACTIONS, FormError
from cpo_gateway.console.auth import Authenticator, LoginRefused, Operator, Session, csrf_ok
from cpo_gateway.console.port import ConsoleOps, Health, Metrics
from cpo_gateway.httpguard import GuardedListener, ListenerLimits

log = logs.get(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "cg_session"
LOGIN_COOKIE = "cg_login"  # a login form's own CSRF token (there is no session yet)
POLL_S = 1.0  # SSE: the port is read this often, differences are pushed
MAX_STREAMS = 32  # SSE clients at once; more get 503
SESSION_STATES = ("pending", "active", "finished", "failed", "needs_review")
OUTBOX_STATES = ("pending", "dead", "delivered")
RECENT_EVENTS = 200  # audit and security events kept for the EMPs & security page


@dataclass(frozen=True, slots=True)
class RecentEvent:
    at: str
    event: str
    detail: str
    refused: bool


_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


def _limit(raw: str | None, default: int = 200, most: int = 5000) -> int:
    try:
        return max(1, min(most, int(raw or default)))
    except ValueError:
        return default


def _back(raw: str | None) -> str:
    """Where to go after an action: a path of ours only (no open redirect)."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/chargers"


class ConsoleServer:
    def __init__(
        self,
        ops: ConsoleOps,
        *,
        host: str,
        port: int,
        operators: Sequence[Operator],
        token: str,
        session_ttl_s: float,
        cookie_secure: bool,
        health: Health,
        metrics: Metrics,
        limits: ListenerLimits | None = None,
    ) -> None:
        """`limits`: the deadlines for slow and idle clients and the connection caps (every
        listener has them; see httpguard)."""
        self._ops = ops
        self.listener = GuardedListener(limits or ListenerLimits(), "admin")
        self._host, self._port = host, port
        self.auth = Authenticator(operators, token, ttl_s=session_ttl_s)
        self._ttl = session_ttl_s
        self._secure = cookie_secure
        self._health = health
        self._metrics = metrics
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.streams = 0
        self.recent: deque[RecentEvent] = deque(maxlen=RECENT_EVENTS)
        self._env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            enable_async=False,
        )

    @property
    def port(self) -> int:
        assert self._runner is not None
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        if not self.auth.configured:
            log.warning("console.no_operators", hint="add [[admin.user]] or admin.token_file")
        app = web.Application(
            client_max_size=64 * 1024, middlewares=[self.listener.middleware, self._headers]
        )
        r = app.router
        r.add_get("/", self._index)
        r.add_get("/login", self._login_form)
        r.add_post("/login", self._login)
        r.add_post("/logout", self._logout)
        r.add_get("/chargers", self._chargers)
        r.add_get("/sessions", self._sessions)
        r.add_get("/sessions.csv", self._sessions_csv)
        r.add_get("/outbox", self._outbox)
        r.add_get("/whitelist", self._whitelist)
        r.add_get("/emps", self._emps)
        r.add_get("/events", self._events)
        r.add_post("/actions/{name}", self._action)
        r.add_get("/healthz", self._healthz)
        r.add_get("/metrics", self._metrics_view)
        r.add_static("/static", HERE / "static")
        # shutdown_timeout: SSE streams end within one poll once closing is set.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=30.0,
            shutdown_timeout=5.0,
        )
        await self._runner.setup()
        site = self.listener.site(self._runner, self._host, self._port)
        await site.start()
        log.info("console.listening", host=self._host, port=self.port)

    async def close(self) -> None:
        self._closing.set()
        self.auth.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- plumbing ------------------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            for name, value in _HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    def _audit(self, event: str, **values: object) -> None:
        """Log an audit or security event and keep it for the console's own page."""
        refused = event.startswith("security.") or values.get("ok") is False
        refused = refused or event in ("audit.login_failed", "audit.login_limited")
        (log.warning if refused else log.info)(event, **values)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        detail = " ".join(f"{k}={v}" for k, v in values.items())
        self.recent.appendleft(RecentEvent(at, event, detail, refused))

    def _session(self, request: web.Request) -> Session | None:
        return self.auth.session(request.cookies.get(SESSION_COOKIE))

    def _page_session(self, request: web.Request) -> Session:
        session = self._session(request)
        if session is None:
            raise web.HTTPFound("/login")
        return session

    def _render(self, name: str, session: Session | None, **ctx: Any) -> web.Response:
        flash, csrf = [], ""
        if session is not None:
            flash, session.flash = session.flash, []
            csrf = session.csrf
        html = self._env.get_template(name).render(
            operator=session.operator if session else "", csrf=csrf, flash=flash, **ctx
        )
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    # --- login ---------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/chargers" if self._session(request) else "/login")

    async def _login_form(self, request: web.Request, error: str = "") -> web.Response:
        nonce = secrets.token_urlsafe(24)
        response = self._render("login.html", None, nonce=nonce, error=error)
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=600,
            httponly=True,
            samesite="Strict",
            secure=self._secure,
            path="/login",
        )
        if error:
            response.set_status(401 if "wrong" in error else 429)
        return response

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        nonce = request.cookies.get(LOGIN_COOKIE)
        given = form.get("nonce")
        if not nonce or not isinstance(given, str) or not secrets.compare_digest(nonce, given):
            raise web.HTTPForbidden(text="login form expired or forged: reload the login page")
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        source = request.remote or "?"
        try:
            session = await self.auth.login(name, password, source)
        except LoginRefused as exc:
            event = "audit.login_limited" if exc.limited else "audit.login_failed"
            self._audit(event, operator=name[:64], source=source)
            return await self._login_form(request, str(exc))
        self._audit("audit.login", operator=session.operator, source=source)
        response = web.HTTPSeeOther("/chargers")
        # Secure only when configured: on plain loopback http a browser would not send it back.
        response.set_cookie(
            SESSION_COOKIE,
            session.id,
            max_age=int(self._ttl),
            httponly=True,
            samesite="Strict",
            secure=self._secure,
            path="/",
        )
        response.del_cookie(LOGIN_COOKIE, path="/login")
        raise response

    async def _logout(self, request: web.Request) -> web.Response:
        session = await self._checked(request)
        self.auth.logout(session.id)
        self._audit("audit.logout", operator=session.operator)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    async def _checked(self, request: web.Request) -> Session:
        """The session of a POST whose CSRF token matches; 401 or 403 otherwise."""
        session = self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text="log in first")
        form = await request.post()
        token = form.get("csrf")
        if not csrf_ok(session, token if isinstance(token, str) else None):
            self._audit("security.console_csrf_refused", operator=session.operator)
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
        return session

    # --- pages ---------------------------------------------------------------------------------
    async def _chargers(self, request: web.Request) -> web.Response:
        session = self._page_session(request)
        chargers, connectors = await self._ops.chargers(), await self._ops.connectors()
        return self._render(
            "chargers.html", session, page="chargers", chargers=chargers, connectors=connectors
        )

    def _session_filters(self, request: web.Request) -> tuple[str | None, str | None, int]:
        state = request.query.get("state") or None
        if state not in (None, *SESSION_STATES):
            raise web.HTTPBadRequest(text="state: expected one of " + ", ".join(SESSION_STATES))
        return state, request.query.get("emp") or None, _limit(request.query.get("limit"))

    async def _sessions(self, request: web.Request) -> web.Response:
        session = self._page_session(request)
        state, emp, limit = self._session_filters(request)
        rows = await self._ops.sessions(state, emp, limit)
        return self._render(
            "sessions.html",
            session,
            page="sessions",
            sessions=rows,
            states=SESSION_STATES,
            state=state or "",
            emp=emp or "",
            query=request.query_string,
        )

    async def _sessions_csv(self, request: web.Request) -> web.Response:
        self._page_session(request)
        state, emp, limit = self._session_filters(request)
        rows = await self._ops.sessions(state, emp, limit)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "session_id",
                "state",
                "origin",
                "evse_id",
                "charge_point",
                "emp",
                "started_at",
                "stopped_at",
                "energy_kwh",
                "duration_s",
                "cdr_state",
                "detail",
            ]
        )
        for s in rows:
            writer.writerow(
                [
                    s.id,
                    s.state,
                    s.origin,
                    s.evse_id,
                    s.charge_point,
                    s.emp,
                    s.started_at,
                    s.stopped_at,
                    "" if s.energy_kwh is None else s.energy_kwh,
                    "" if s.duration_s is None else round(s.duration_s),
                    s.cdr_state,
                    s.detail,
                ]
            )
        return web.Response(
            text=out.getvalue(),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": 'attachment; filename="sessions.csv"'},
        )

    async def _outbox(self, request: web.Request) -> web.Response:
        session = self._page_session(request)
        state = request.query.get("state") or "pending"
        if state not in OUTBOX_STATES:
            raise web.HTTPBadRequest(text="state: expected one of " + ", ".join(OUTBOX_STATES))
        rows = await self._ops.outbox(state, _limit(request.query.get("limit")))
        return self._render(
            "outbox.html", session, page="outbox", rows=rows, state=state, states=OUTBOX_STATES
        )

    async def _whitelist(self, request: web.Request) -> web.Response:
        session = self._page_session(request)
        uid = request.query.get("uid", "").strip()[:64]
        lookup = await self._ops.whitelist_lookup(uid) if uid else None
        counts = await self._ops.whitelist_counts()
        return self._render(
            "whitelist.html", session, page="whitelist", uid=uid, lookup=lookup, counts=counts
        )

    async def _emps(self, request: web.Request) -> web.Response:
        session = self._page_session(request)
        ok, health = await self._health()
        return self._render(
            "emps.html",
            session,
            page="emps",
            emps=await self._ops.emps(),
            healthy=ok,
            health=health,
            security=self._ops.security_events(),
            recent=list(self.recent),
        )

    # --- actions -------------------------------------------------------------------------------
    async def _action(self, request: web.Request) -> web.Response:
        session = await self._checked(request)
        name = request.match_info["name"]
        action = ACTIONS.get(name)
        if action is None:
            raise web.HTTPNotFound(text=f"no action {name!r}")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        targets = {t: form.get(t, "") for t in action.targets}
        try:
            result = await action.run(self._ops, form)
        except FormError as exc:
            self._audit(
                action.event, operator=session.operator, **targets, ok=False, detail=str(exc)
            )
            session.flash.append((False, f"{name}: {exc}"))
        else:
            self._audit(
                action.event,
                operator=session.operator,
                **targets,
                ok=result.ok,
                detail=result.detail,
            )
            session.flash.append((result.ok, f"{name}: {result.detail}"))
        raise web.HTTPSeeOther(_back(form.get("back")))

    # --- live updates --------------------------------------------------------------------------
    async def _events(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text="log in first")
        if self.streams >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text="too many live views open")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        self.streams += 1
        try:
            await response.prepare(request)
            await self._stream(response, session.id)
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            self.streams -= 1
        return response

    async def _stream(self, response: web.StreamResponse, session_id: str) -> None:
        sent: dict[str, bytes] = {}
        while not self._closing.is_set() and self.auth.session(session_id) is not None:
            events: list[tuple[str, str, object]] = [
                ("charger", c.id, c) for c in await self._ops.chargers()
            ]
            events += [
                ("connector", f"{k.charge_point}/{k.connector}", k)
                for k in await self._ops.connectors()
            ]
            for kind, key, view in events:
                data = orjson.dumps(view)
                if sent.get(f"{kind}:{key}") != data:
                    sent[f"{kind}:{key}"] = data
                    await response.write(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")
            await response.write(b": tick\n\n")  # finds a closed connection within a poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), POLL_S)

    # --- operations ----------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        ok, detail = await self._health()
        status = ("degraded" if detail.get("degraded") else "ok") if ok else "unhealthy"
        return web.Response(
            status=200 if ok else 503,
            body=orjson.dumps({"status": status, **detail}),
            content_type="application/json",
        )

    async def _metrics_view(self, request: web.Request) -> web.Response:
        return web.Response(text=await self._metrics(), content_type="text/plain", charset="utf-8")
