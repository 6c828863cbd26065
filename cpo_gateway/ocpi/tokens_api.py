"""The Tokens receiver (mod_tokens 12.2.1): a partner PUTs, PATCHes and GETs its tokens at
{tokens}/{country_code}/{party_id}/{uid}[?type=RFID].

Who is asking is decided before these handlers (the credentials' token, see `identify`):
a partner acts only on tokens of its own country_code/party_id (403 otherwise), a PUT's
body names the same token as its URL, and a PATCH is merged into the stored token.
Answers are OCPI envelopes; every refusal names the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from cpo_gateway import logs
from cpo_gateway.bridge.core_ports import TokenSide
from cpo_gateway.ocpi.tokens import (
    Token,
    TokenError,
    TokenType,
    country_code,
    from_partner_token,
    parse_token,
    party_id,
    patch_token,
    render,
    to_partner_token,
    token_type,
    token_uid,
)

log = logs.get(__name__)

SUCCESS = 1000
UNKNOWN_TOKEN = 2004
MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class TokenPartner:
    """A partner as its credentials name it: our name for it, and the (country_code,
    party_id) roles it speaks for."""

    name: str
    parties: frozenset[tuple[str, str]]


Identify = Callable[[web.Request], Awaitable[TokenPartner | None]]


def envelope(
    data: Any, status_code: int = SUCCESS, message: str = "Success", http_status: int = 200
) -> web.Response:
    body: dict[str, Any] = {"status_code": status_code, "status_message": message}
    if data is not None:
        body["data"] = data
    body["timestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return web.Response(
        body=orjson.dumps(body), status=http_status, content_type="application/json"
    )


def _refusal(exc: TokenError, http_status: int = 400) -> web.Response:
    return envelope(None, exc.status_code, str(exc), http_status)


class TokensReceiver:
    """The routes under `prefix` (e.g. /ocpi/cpo/2.2.1/tokens) for one aiohttp app."""

    def __init__(self, tokens: TokenSide, identify: Identify, prefix: str) -> None:
        self._tokens = tokens
        self._identify = identify
        self._prefix = prefix.rstrip("/")

    def add_routes(self, app: web.Application) -> None:
        path = self._prefix + "/{country_code}/{party_id}/{uid}"
        app.router.add_get(path, self.get)
        app.router.add_put(path, self.put)
        app.router.add_patch(path, self.patch)

    async def _address(self, request: web.Request) -> tuple[TokenPartner, str, str, str, TokenType]:
        """Who asks, and which token the URL names; TokenError or HTTPException otherwise."""
        partner = await self._identify(request)
        if partner is None:
            raise web.HTTPUnauthorized(
                body=orjson.dumps({"status_code": 2001, "status_message": "Authorization"}),
                content_type="application/json",
            )
        info = request.match_info
        country = country_code(info["country_code"], "country_code (URL)")
        party = party_id(info["party_id"], "party_id (URL)")
        uid = token_uid(info["uid"], "uid (URL)")
        kind = token_type(request.query.get("type", TokenType.RFID.value), "type (query)")
        if (country, party) not in partner.parties:
            raise _Foreign(country, party)
        return partner, country, party, uid, kind

    async def _body(self, request: web.Request) -> object:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise TokenError("$", f"body larger than {MAX_BODY} bytes")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise TokenError("$", f"body larger than {MAX_BODY} bytes")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise TokenError("$", "not JSON") from exc

    async def _stored(
        self, partner: TokenPartner, country: str, party: str, uid: str, kind: TokenType
    ) -> Token | None:
        stored = await self._tokens.get_token(partner.name, country, party, uid, kind.value)
        return None if stored is None else from_partner_token(stored)

    async def get(self, request: web.Request) -> web.Response:
        try:
            partner, country, party, uid, kind = await self._address(request)
        except TokenError as exc:
            return _refusal(exc)
        except _Foreign as exc:
            return exc.response()
        token = await self._stored(partner, country, party, uid, kind)
        if token is None:
            return envelope(None, UNKNOWN_TOKEN, "unknown token", 404)
        return envelope(render(token))

    async def put(self, request: web.Request) -> web.Response:
        try:
            partner, country, party, uid, kind = await self._address(request)
            token = parse_token(await self._body(request))
            for field, url, sent in (
                ("country_code", country, token.country_code),
                ("party_id", party, token.party_id),
                ("uid", uid, token.uid),
                ("type", kind.value, token.type.value),
            ):
                if url != sent:
                    raise TokenError(field, f"the body says {sent!r}, the URL {url!r}")
        except TokenError as exc:
            return _refusal(exc)
        except _Foreign as exc:
            return exc.response()
        await self._tokens.put_token(to_partner_token(partner.name, token))
        log.info("ocpi.token_put", emp=partner.name, type=kind.value, valid=token.valid)
        return envelope(None)

    async def patch(self, request: web.Request) -> web.Response:
        try:
            partner, country, party, uid, kind = await self._address(request)
            body = await self._body(request)
            stored = await self._stored(partner, country, party, uid, kind)
            if stored is None:
                return envelope(None, UNKNOWN_TOKEN, "unknown token", 404)
            token = patch_token(stored, body)
        except TokenError as exc:
            return _refusal(exc)
        except _Foreign as exc:
            return exc.response()
        await self._tokens.put_token(to_partner_token(partner.name, token))
        log.info("ocpi.token_patched", emp=partner.name, type=kind.value, valid=token.valid)
        return envelope(None)


class _Foreign(Exception):
    """The URL names a country_code/party_id the partner does not speak for."""

    def __init__(self, country: str, party: str) -> None:
        super().__init__(f"{country}/{party}")
        self.country = country
        self.party = party

    def response(self) -> web.Response:
        return envelope(
            None,
            2001,
            f"country_code/party_id: {self.country}/{self.party} is not a party of yours",
            403,
        )
