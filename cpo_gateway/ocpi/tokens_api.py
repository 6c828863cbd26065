"""The Tokens receiver (mod_tokens 12.2.1): a partner PUTs, PATCHes and GETs its tokens at
{tokens}/{country_code}/{party_id}/{uid}[?type=RFID].

Who is asking is decided before these handlers (the credentials' token, see `identify`):
a partner acts only on tokens of its own country_code/party_id (403 otherwise), a PUT's
body names the same token as its URL, and a PATCH is merged into the stored token.
Answers are OCPI envelopes; every refusal names the field. A PATCH and a PUT of a token
kept by this gateway replace what the core holds in one commit (the core forgets cached
answers and the chargers' lists follow at the next local-list run).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from cpo_gateway import logs
from cpo_gateway.bridge.core_ports import TokenSide
from cpo_gateway.ocpi.server import caller
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
from cpo_gateway.ocpi.transport import (
    OcpiError,
    OcpiResponse,
    OcpiStatus,
    Party,
    ocpi_json_response,
    read_json,
)

log = logs.get(__name__)


@dataclass(frozen=True, slots=True)
class TokenPartner:
    """A partner as its credentials name it: our name for it, and the parties (roles) it
    speaks for."""

    name: str
    parties: frozenset[Party]


Identify = Callable[[web.Request], Awaitable[TokenPartner]]  # raises a 401 OcpiError


def _invalid(exc: TokenError) -> OcpiError:
    # A field fault of a request that is JSON: HTTP 200 with the OCPI code (status_codes).
    return OcpiError(OcpiStatus(exc.status_code), str(exc), http_status=200)


def _unknown() -> OcpiError:
    return OcpiError(OcpiStatus.UNKNOWN_TOKEN, "uid: unknown token", http_status=404)


async def _from_credentials(request: web.Request) -> TokenPartner:
    who = caller(request)  # the OCPI listener authenticated it (ocpi/server.py)
    return TokenPartner(who.partner, who.parties)


class TokensReceiver:
    """The Tokens module (RECEIVER) of the OCPI listener: routes under its prefix
    (``{base}/2.2.1/tokens``), behind transport.middleware, which renders the OcpiErrors
    raised here. `identify`: who calls (default: the listener's authenticated caller)."""

    identifier = "tokens"
    role = "RECEIVER"

    def __init__(self, tokens: TokenSide, identify: Identify = _from_credentials) -> None:
        self._tokens = tokens
        self._identify = identify

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        path = prefix.rstrip("/") + "/{country_code}/{party_id}/{uid}"
        router.add_get(path, self.get)
        router.add_put(path, self.put)
        router.add_patch(path, self.patch)

    async def _address(self, request: web.Request) -> tuple[TokenPartner, Party, str, TokenType]:
        """Who asks, and which token the URL names (its own, or 403)."""
        partner = await self._identify(request)
        info = request.match_info
        try:
            party = Party(
                country_code(info["country_code"], "country_code (URL)"),
                party_id(info["party_id"], "party_id (URL)"),
            )
            uid = token_uid(info["uid"], "uid (URL)")
            kind = token_type(request.query.get("type", TokenType.RFID.value), "type (query)")
        except TokenError as exc:
            raise _invalid(exc) from None
        if party not in partner.parties:
            raise OcpiError.forbidden(f"country_code/party_id: {party} is not a party of yours")
        return partner, party, uid, kind

    async def _stored(
        self, partner: TokenPartner, party: Party, uid: str, kind: TokenType
    ) -> Token | None:
        stored = await self._tokens.get_token(
            partner.name, party.country_code, party.party_id, uid, kind.value
        )
        return None if stored is None else from_partner_token(stored)

    async def get(self, request: web.Request) -> OcpiResponse:
        partner, party, uid, kind = await self._address(request)
        token = await self._stored(partner, party, uid, kind)
        if token is None:
            raise _unknown()
        return ocpi_json_response(render(token))

    async def put(self, request: web.Request) -> OcpiResponse:
        partner, party, uid, kind = await self._address(request)
        body = await read_json(request)
        try:
            token = parse_token(body)
            for field, url, sent in (
                ("country_code", party.country_code, token.country_code),
                ("party_id", party.party_id, token.party_id),
                ("uid", uid, token.uid),
                ("type", kind.value, token.type.value),
            ):
                if url.upper() != sent.upper():  # CiStrings
                    raise TokenError(field, f"the body says {sent!r}, the URL {url!r}")
        except TokenError as exc:
            raise _invalid(exc) from None
        await self._tokens.put_token(to_partner_token(partner.name, token))
        log.info("ocpi.token_put", emp=partner.name, type=kind.value, valid=token.valid)
        return ocpi_json_response()

    async def patch(self, request: web.Request) -> OcpiResponse:
        partner, party, uid, kind = await self._address(request)
        body = await read_json(request)
        stored = await self._stored(partner, party, uid, kind)
        if stored is None:
            raise _unknown()
        try:
            token = patch_token(stored, body)
        except TokenError as exc:
            raise _invalid(exc) from None
        await self._tokens.put_token(to_partner_token(partner.name, token))
        log.info("ocpi.token_patched", emp=partner.name, type=kind.value, valid=token.valid)
        return ocpi_json_response()
