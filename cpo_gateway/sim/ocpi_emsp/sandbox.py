"""The sandbox eMSP: a real OCPI 2.2.1 peer for `cpo-gateway demo`, the tests and benchmarks.

It registers in both directions: a CPO can register with it (it holds a token A the test
hands to the gateway), and it can register with a CPO (`register_with`, given the CPO's
versions URL and a token A the CPO issued). Its receiver endpoints for locations, sessions
and CDRs record every request they get (`received`) and answer 1000; `fault` makes every
answer of those endpoints misbehave as a flaky real eMSP does (200 with HTML, 500, slow).
Its tokens sender (`tokens`, sim/ocpi_emsp/tokens.py) lists its tokens page by page and answers
real-time authorization, to the CPO it is registered with.

Written as an outside party would write it: aiohttp and orjson only, none of the gateway's
OCPI code, so both sides cannot share one misreading of the spec.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import secrets
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from cpo_gateway.sim.ocpi_emsp.tokens import TokenList

VERSION = "2.2.1"
RECEIVER_MODULES = ("locations", "sessions", "cdrs", "tariffs")
SENDER_MODULES = ("tokens", "commands")


class Fault(enum.Enum):
    NONE = "none"
    HTML = "html"  # 200 with an HTML page: a proxy or captive portal, not the eMSP
    ERROR = "500"  # 500 with an envelope 3000
    SLOW = "slow"  # answer after `slow_s`


@dataclass(frozen=True, slots=True)
class Received:
    """One request to a receiver endpoint as it arrived."""

    module: str
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    at: float


@dataclass(slots=True)
class Registration:
    """What the eMSP knows of the CPO it is registered with."""

    token_theirs: str = field(default="", repr=False)  # the token we call the CPO with
    token_ours: str = field(default="", repr=False)  # the token the CPO calls us with
    versions_url: str = ""
    endpoints: dict[str, str] = field(default_factory=dict)  # identifier -> URL
    roles: list[dict[str, Any]] = field(default_factory=list)


def _envelope(data: Any = None, code: int = 1000, message: str = "Success") -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": code, "status_message": message}
    if data is not None:
        body["data"] = data
    body["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return body


def _json(
    data: Any = None, code: int = 1000, message: str = "Success", status: int = 200
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(_envelope(data, code, message)),
        content_type="application/json",
    )


def _token_of(header: str | None) -> str | None:
    if not header or not header.startswith("Token "):
        return None
    value = header[6:].strip()
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return value  # a peer that sends the token unencoded (2.1.1 habit)


def _header(token: str) -> dict[str, str]:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


class SandboxEmsp:
    """An eMSP on a real socket (see the module docstring)."""

    def __init__(
        self,
        *,
        country_code: str = "NL",
        party_id: str = "EMS",
        name: str = "Sandbox eMSP",
        host: str = "127.0.0.1",
        port: int = 0,
        token_a: str | None = None,
    ) -> None:
        self.country_code, self.party_id, self.name = country_code, party_id, name
        self._host, self._port = host, port
        self.token_a: str | None = token_a or secrets.token_urlsafe(24)
        self.registration: Registration | None = None
        self.received: list[Received] = []
        self.cdrs: dict[str, Any] = {}  # CDRs by id, as a receiver that dedups keeps them
        self.refused = 0  # requests refused for their token
        self.fault = Fault.NONE
        self.fail_credentials = 0  # answer the next N credentials POST/PUT with 503
        # set by a PUT from the CPO: whether the token we called it with still worked then
        self.old_token_during_update: bool | None = None
        self.slow_s = 5.0
        # Refuse (404, 2003) a PATCH of an object never PUT, as a strict receiver does.
        self.strict_patch = False
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._pending: set[str] = set()  # our tokens offered in a POST/PUT still open
        self.tokens = TokenList(country_code=country_code, party_id=party_id)

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/ocpi/emsp/versions", self._versions)
        app.router.add_get(f"/ocpi/emsp/{VERSION}", self._details)
        app.router.add_route("*", f"/ocpi/emsp/{VERSION}/credentials", self._credentials)
        for module in RECEIVER_MODULES:
            app.router.add_route("*", f"/ocpi/emsp/{VERSION}/{module}", self._receiver)
            app.router.add_route("*", f"/ocpi/emsp/{VERSION}/{module}/{{rest:.*}}", self._receiver)
        # Where we ask a CPO to post CommandResults (each command's response_url).
        app.router.add_post(f"/ocpi/emsp/{VERSION}/commands/{{rest:.*}}", self._receiver)
        tokens = f"/ocpi/emsp/{VERSION}/tokens"
        app.router.add_get(tokens, self._registered(self.tokens.list_page))
        app.router.add_post(tokens + "/{uid}/authorize", self._registered(self.tokens.authorize))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base(self) -> str:
        return f"http://{self._host}:{self._port}/ocpi/emsp"

    @property
    def versions_url(self) -> str:
        return f"{self.base}/versions"

    def credentials(self, token: str) -> dict[str, Any]:
        return {
            "token": token,
            "url": self.versions_url,
            "roles": [
                {
                    "role": "EMSP",
                    "country_code": self.country_code,
                    "party_id": self.party_id,
                    "business_details": {"name": self.name},
                }
            ],
        }

    # --- who may call ---------------------------------------------------------------------
    def _known(self, request: web.Request, *, allow_a: bool) -> str | None:
        token = _token_of(request.headers.get("Authorization"))
        reg = self.registration
        if token is not None and reg is not None and token == reg.token_ours:
            return "registered"
        if allow_a and token is not None and token == self.token_a:
            return "token_a"
        if token is not None and token in self._pending:
            return "pending"
        self.refused += 1
        return None

    def _registered(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self._known(request, allow_a=False) != "registered":
                return _json(code=2000, message="unknown token", status=401)
            return await handler(request)

        return guarded

    async def _versions(self, request: web.Request) -> web.Response:
        if self._known(request, allow_a=True) is None:
            return _json(code=2000, message="unknown token", status=401)
        return _json([{"version": VERSION, "url": f"{self.base}/{VERSION}"}])

    async def _details(self, request: web.Request) -> web.Response:
        if self._known(request, allow_a=True) is None:
            return _json(code=2000, message="unknown token", status=401)
        endpoints = [
            {
                "identifier": "credentials",
                "role": "SENDER",
                "url": f"{self.base}/{VERSION}/credentials",
            }
        ]
        endpoints += [
            {"identifier": m, "role": "RECEIVER", "url": f"{self.base}/{VERSION}/{m}"}
            for m in RECEIVER_MODULES
        ]
        endpoints += [
            {"identifier": m, "role": "SENDER", "url": f"{self.base}/{VERSION}/{m}"}
            for m in SENDER_MODULES
        ]
        return _json({"version": VERSION, "endpoints": endpoints})

    # --- a CPO registers with us (we are the receiver of its credentials) ------------------
    async def _credentials(self, request: web.Request) -> web.Response:
        who = self._known(request, allow_a=True)
        if who is None:
            return _json(code=2000, message="unknown token", status=401)
        if request.method == "GET":
            reg = self.registration
            return _json(self.credentials(reg.token_ours if reg else ""))
        if request.method == "DELETE":
            if who != "registered":
                return _json(code=2000, message="not registered", status=405)
            self.registration = None
            return _json()
        if request.method not in ("POST", "PUT"):
            return _json(code=2000, message="method", status=405)
        if self.fail_credentials > 0:
            self.fail_credentials -= 1
            return _json(code=3000, message="sandbox: try again later", status=503)
        if (request.method == "POST") != (who == "token_a"):
            return _json(code=2000, message="POST with token A, PUT when registered", status=405)
        try:
            body = orjson.loads(await request.read())
            token_b, url = body["token"], body["url"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _json(code=2001, message="token, url: missing", status=400)
        before = self.registration
        try:
            reg = await self._learn(url, token_b)
            if before is not None and request.method == "PUT":
                # while the update is open, does the token we have still work?
                self.old_token_during_update = await self._works(url, before.token_theirs)
        except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError) as exc:
            return _json(code=3001, message=f"cannot use your versions: {exc}")
        reg.roles = list(body.get("roles") or [])
        reg.token_ours = secrets.token_urlsafe(24)
        self.registration = reg
        if request.method == "POST":
            self.token_a = None  # used up
        return _json(self.credentials(reg.token_ours))

    async def _works(self, versions_url: str, token: str) -> bool:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(versions_url, headers=_header(token)) as r,
        ):
            return r.status == 200

    async def _learn(self, versions_url: str, token: str) -> Registration:
        """GET the CPO's versions and 2.2.1 endpoints with `token`."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.get(versions_url, headers=_header(token)) as r:
                versions = (await r.json())["data"]
            url = next(v["url"] for v in versions if v["version"] == VERSION)
            async with http.get(url, headers=_header(token)) as r:
                details = (await r.json())["data"]
        endpoints = {e["identifier"]: e["url"] for e in details["endpoints"]}
        return Registration(token_theirs=token, versions_url=versions_url, endpoints=endpoints)

    # --- we register with a CPO (we are the sender of our credentials) ---------------------
    async def register_with(self, versions_url: str, token_a: str) -> Registration:
        reg = await self._learn(versions_url, token_a)
        token_b = secrets.token_urlsafe(24)
        self._pending.add(token_b)
        try:
            body = await self.send(
                "POST", reg.endpoints["credentials"], token_a, self.credentials(token_b)
            )
        finally:
            self._pending.discard(token_b)
        data = body["data"]
        final = await self._learn(data["url"], data["token"])
        final.token_ours = token_b
        final.roles = list(data.get("roles") or [])
        self.registration = final
        return final

    async def update_credentials(self) -> Registration:
        """PUT new credentials (a new token for the CPO to call us with)."""
        reg = self.registration
        assert reg is not None
        token_b = secrets.token_urlsafe(24)
        self._pending.add(token_b)
        try:
            body = await self.send(
                "PUT", reg.endpoints["credentials"], reg.token_theirs, self.credentials(token_b)
            )
        finally:
            self._pending.discard(token_b)
        data = body["data"]
        reg.token_theirs, reg.token_ours = data["token"], token_b
        return reg

    async def unregister(self) -> dict[str, Any]:
        reg = self.registration
        assert reg is not None
        body = await self.send("DELETE", reg.endpoints["credentials"], reg.token_theirs)
        self.registration = None
        return body

    async def send(
        self,
        method: str,
        url: str,
        token: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request to the CPO; the answer's envelope (whatever its status)."""
        hdrs = {**_header(token), **(headers or {})}
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.request(method, url, data=data, headers=hdrs) as r,
        ):
            answer: dict[str, Any] = orjson.loads(await r.read())
            answer["_http_status"] = r.status
            answer["_headers"] = dict(r.headers)
            return answer

    # --- receivers --------------------------------------------------------------------------
    async def _receiver(self, request: web.Request) -> web.StreamResponse:
        if self._known(request, allow_a=False) != "registered":
            return _json(code=2000, message="unknown token", status=401)
        module = request.path.split(f"/{VERSION}/", 1)[1].split("/", 1)[0]
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return _json(code=2001, message="body: not JSON", status=400)
        if self.fault is Fault.SLOW:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.slow_s)
        elif self.fault is Fault.HTML:
            return web.Response(
                status=200, text="<html><body>Portal</body></html>", content_type="text/html"
            )
        elif self.fault is Fault.ERROR:
            return _json(code=3000, message="sandbox fault", status=500)
        if self.strict_patch and request.method == "PATCH" and not self._was_put(request.path):
            return _json(code=2003, message="unknown object: PUT it first", status=404)
        self.received.append(
            Received(module, request.method, request.path, body, dict(request.headers), time.time())
        )
        if module == "cdrs" and request.method == "POST" and isinstance(body, dict):
            self.cdrs.setdefault(str(body.get("id")), body)  # billed once per CDR id
        return _json()

    # --- commands (we are their sender) ----------------------------------------------------
    async def command(self, command: str, body: dict[str, Any], ref: str = "") -> dict[str, Any]:
        """POST a command to the CPO, asking for its result at our commands/{command}/{ref}
        (`results(ref)`); the answer's envelope."""
        reg = self.registration
        assert reg is not None, "not registered with a CPO"
        ref = ref or secrets.token_hex(8)
        url = f"{self.base}/{VERSION}/commands/{command}/{ref}"
        return await self.send(
            "POST", f"{reg.endpoints['commands']}/{command}", reg.token_theirs,
            {"response_url": url, **body},
        )  # fmt: skip

    def results(self, ref: str) -> list[Any]:
        """The CommandResults the CPO posted for the command `ref`, in order."""
        return [
            r.body for r in self.received if r.module == "commands" and r.path.endswith(f"/{ref}")
        ]

    def _was_put(self, path: str) -> bool:
        """Whether this object (or, for an EVSE, its location) arrived by PUT."""
        put = {r.path for r in self.received if r.method == "PUT"}
        return path in put or path.rsplit("/", 1)[0] in put
