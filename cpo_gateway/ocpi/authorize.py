"""Real-time authorization (mod_tokens 12.2.2.2): POST {tokens}/{uid}/authorize[?type=] to
the partner that issued a token, with the LocationReferences of the charger (its station and
EVSEs, as our Locations module names them) when the core knows them, its AuthorizationInfo.allowed read as the core's
VerifyOutcome (the core turns that into the charger's idTagInfo, within its deadline).

An answer is the partner's word only when it is an envelope: 404 or 2004 is an unknown
token; 1000 with `allowed` one of the AllowedType values is that value; anything else (no
answer, HTML, 3xxx, an `allowed` we do not know) is UNREACHABLE, and the token's policy
decides (ALLOWED_OFFLINE: accept, NEVER: refuse).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cpo_gateway import logs
from cpo_gateway.bridge.model import Place, VerifyOutcome
from cpo_gateway.ocpi.client import OcpiCallFailed, OcpiClient
from cpo_gateway.ocpi.locations import evse_uid
from cpo_gateway.ocpi.transport import OcpiStatus, Party

log = logs.get(__name__)

ALLOWED = {
    "ALLOWED": VerifyOutcome.ACCEPTED,
    "BLOCKED": VerifyOutcome.BLOCKED,
    "EXPIRED": VerifyOutcome.EXPIRED,
    "NO_CREDIT": VerifyOutcome.NO_PAYMENT,
    "NOT_ALLOWED": VerifyOutcome.NOT_ALLOWED,
}


@dataclass(frozen=True, slots=True)
class AuthorizeTarget:
    """Where one partner takes authorize requests, and the token we present there."""

    tokens_url: str  # the partner's tokens endpoint (sender interface)
    token: str  # our credentials token at that partner (token C)
    party: Party | None = None  # for the routing headers


# (partner, the card's normalised uid) -> (the token's uid as issued, its type), or None
# when the partner issued no such token (asked as an RFID card with that uid).
TokenOf = Callable[[str, str], Awaitable[tuple[str, str] | None]]


def location_references(place: Place) -> dict[str, Any]:
    """LocationReferences (mod_tokens 12.4.3) of where the card is presented."""
    return {"location_id": place.site[:36], "evse_uids": [evse_uid(e) for e in place.evses]}


def outcome_of(http_status: int, status_code: int | None, data: object) -> VerifyOutcome:
    """The partner's answer as the core's outcome (see the module docstring)."""
    if http_status == 404 or status_code == OcpiStatus.UNKNOWN_TOKEN:
        return VerifyOutcome.UNKNOWN
    if not (200 <= http_status <= 299) or status_code is None or status_code // 1000 != 1:
        return VerifyOutcome.UNREACHABLE
    if isinstance(data, list) and len(data) == 1:
        # AuthorizationInfo wrapped in a one-element list, as some eMSPs (extrawest-ocpi)
        # answer: unambiguous, so read it; a longer list says nothing.
        data = data[0]
    allowed = data.get("allowed") if isinstance(data, Mapping) else None
    return (
        ALLOWED.get(allowed, VerifyOutcome.UNREACHABLE)
        if isinstance(allowed, str)
        else (VerifyOutcome.UNREACHABLE)
    )


class OcpiVerifier:
    """`verify(emp, uid)` of the EmpLink port for OCPI partners."""

    def __init__(
        self,
        client: OcpiClient,
        targets: Callable[[str], Awaitable[AuthorizeTarget | None]],
        token_of: TokenOf,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self._client = client
        self._targets = targets
        self._token_of = token_of
        self._timeout_s = timeout_s  # the core's own deadline is usually shorter

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> VerifyOutcome:
        target = await self._targets(emp)
        if target is None:  # not registered yet: nobody to ask
            return VerifyOutcome.UNREACHABLE
        issued = await self._token_of(emp, uid)
        token_uid, kind = issued if issued is not None else (uid, "RFID")
        url = f"{target.tokens_url.rstrip('/')}/{quote(token_uid, safe='')}/authorize"
        try:
            reply = await self._client.request(
                "POST",
                url + f"?type={kind}",
                target.token,
                None if place is None else location_references(place),
                to=target.party,
                timeout_s=self._timeout_s,
            )
        except OcpiCallFailed as exc:
            log.warning("ocpi.authorize_unanswered", emp=emp, error=exc.detail)
            return VerifyOutcome.UNREACHABLE
        outcome = outcome_of(reply.http_status, reply.status_code, reply.data)
        log.info("ocpi.authorized", emp=emp, outcome=outcome.value, detail=reply.detail)
        return outcome
