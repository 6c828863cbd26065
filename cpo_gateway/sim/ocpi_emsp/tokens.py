"""A simulated eMSP's tokens sender (OCPI 2.2.1 mod_tokens 12.2.2): the paginated token list
and real-time authorization, a real aiohttp peer on loopback for the tests and the bench.

Written as an outside party would: aiohttp and orjson only, none of the gateway's OCPI
code. The list is `count` generated tokens (uid = the index as 14 hex digits, so a million
cost no memory until asked for) plus any set one by one (`tokens`); `fail_after_pages` makes
the list break off half way (HTTP 503 with an HTML body, as a proxy would answer).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

TIMESTAMP = "2026-01-01T00:00:00Z"


def generated_uid(index: int) -> str:
    return f"{index:014X}"


@dataclass(slots=True)
class SenderState:
    count: int = 0
    whitelist: str = "ALLOWED"
    page_limit: int = 1000
    fail_after_pages: int | None = None
    tokens: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)  # uid -> AllowedType
    pages_served: int = 0
    authorize_calls: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)


class TokenList:
    """The tokens of one eMSP party and the two sender handlers over them; the caller (a
    standalone `TokenSender`, or the sandbox eMSP) decides who may call."""

    def __init__(
        self,
        *,
        country_code: str = "DE",
        party_id: str = "EMS",
        count: int = 0,
        whitelist: str = "ALLOWED",
        page_limit: int = 1000,
    ) -> None:
        self.country_code = country_code
        self.party_id = party_id
        self.state = SenderState(count=count, whitelist=whitelist, page_limit=page_limit)

    def token(self, uid: str, *, type_: str = "RFID", **fields: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "country_code": self.country_code,
            "party_id": self.party_id,
            "uid": uid,
            "type": type_,
            "contract_id": f"{self.country_code}{self.party_id}C{uid[-8:]}",
            "issuer": "Sim eMSP",
            "valid": True,
            "whitelist": self.state.whitelist,
            "last_updated": TIMESTAMP,
        }
        obj.update(fields)
        return obj

    def set_token(self, uid: str, **fields: Any) -> dict[str, Any]:
        obj = self.token(uid, **fields)
        self.state.tokens[(obj["uid"], obj["type"])] = obj
        return obj

    def _listed(self, offset: int, limit: int) -> Iterator[dict[str, Any]]:
        extra = list(self.state.tokens.values())
        end = min(offset + limit, self.total)
        for i in range(offset, end):
            yield (
                self.token(generated_uid(i))
                if i < self.state.count
                else extra[i - self.state.count]
            )

    @property
    def total(self) -> int:
        return self.state.count + len(self.state.tokens)

    async def list_page(self, request: web.Request) -> web.Response:
        """GET {tokens}?offset&limit: one page, Link to the next."""
        state = self.state
        if state.fail_after_pages is not None and state.pages_served >= state.fail_after_pages:
            return web.Response(
                status=503, text="<html>upstream gone</html>", content_type="text/html"
            )
        try:
            offset = max(0, int(request.query.get("offset", "0")))
            limit = min(state.page_limit, max(1, int(request.query.get("limit", "1000"))))
        except ValueError:
            return answer(None, 2001)
        page = list(self._listed(offset, limit))
        state.pages_served += 1
        headers = {"X-Total-Count": str(self.total), "X-Limit": str(state.page_limit)}
        if offset + limit < self.total:
            here = str(request.url.with_query(None))
            headers["Link"] = f'<{here}?offset={offset + limit}&limit={limit}>; rel="next"'
        return answer(page, headers=headers)

    async def authorize(self, request: web.Request) -> web.Response:
        """POST {tokens}/{uid}/authorize[?type=]: AuthorizationInfo, or 404 2004."""
        uid = request.match_info["uid"]
        type_ = request.query.get("type", "RFID")
        raw = await request.read()
        location = orjson.loads(raw) if raw else None
        self.state.authorize_calls.append((uid, type_, location))
        obj = self.state.tokens.get((uid, type_))
        if obj is None and type_ == "RFID" and uid in self.state.answers:
            obj = self.token(uid)
        if obj is None:
            return answer(None, 2004, 404)
        allowed = self.state.answers.get(uid, "ALLOWED" if obj["valid"] else "BLOCKED")
        info: dict[str, Any] = {"allowed": allowed, "token": obj}
        if location is not None:
            info["location"] = location
        return answer(info)


def answer(
    data: Any, code: int = 1000, http: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"status_code": code, "status_message": "Success"}
    if data is not None:
        body["data"] = data
    body["timestamp"] = TIMESTAMP
    return web.Response(
        body=orjson.dumps(body), status=http, content_type="application/json", headers=headers
    )


class TokenSender(TokenList):
    """A standalone tokens sender: GET {url}?offset&limit, POST {url}/{uid}/authorize,
    for the token C given."""

    def __init__(self, token_c: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._expected = "Token " + base64.b64encode(token_c.encode()).decode()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/ocpi/emsp/2.2.1/tokens", self._guarded(self.list_page))
        app.router.add_post(
            "/ocpi/emsp/2.2.1/tokens/{uid}/authorize", self._guarded(self.authorize)
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/ocpi/emsp/2.2.1/tokens"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != self._expected:
                return answer(None, 2000, 401)
            return await handler(request)

        return guarded
