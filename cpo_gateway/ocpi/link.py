"""The core's EmpLink for OCPI partners (behind the router of partners.py).

`verify` is real-time authorization with the token's issuer (ocpi/authorize.py), at the
tokens endpoint (SENDER) the partner listed in its version details, with the token C it gave
us; a partner not registered yet, or one that lists no tokens sender, cannot be asked
(UNREACHABLE: the token's policy decides).

`deliver` of the outbox's kinds (locations, sessions, CDRs, command results) belongs to the
OCPI object modules; until they are in this build a row is kept pending and offered again
an hour later (RETRY with a floor), never dead-lettered for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.links import LinkState, LinkStore
from cpo_gateway.bridge.model import Delivery, DeliveryStatus, Place, VerifyOutcome
from cpo_gateway.ocpi.authorize import AuthorizeTarget, OcpiVerifier, TokenOf
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.registration import endpoints_of, parties_of
from cpo_gateway.ocpi.transport import Party

log = logs.get(__name__)
NOT_BUILT_RETRY_S = 3600.0


async def tokens_sender(links: LinkStore, partner: str) -> AuthorizeTarget | None:
    """Where a registered partner sends its tokens from, and our token there."""
    link = await links.link(partner)
    if link is None or link.state is not LinkState.REGISTERED or not link.token_out:
        return None
    url = endpoints_of(link).url("tokens", "SENDER")
    if url is None:
        return None
    parties = sorted(parties_of(link), key=str)
    return AuthorizeTarget(url, link.token_out, parties[0] if parties else None)


async def pull_source(links: LinkStore, partner: str) -> tuple[str, str, frozenset[Party]] | None:
    """What TokenPuller.keep_pulling needs of a registered partner."""
    target = await tokens_sender(links, partner)
    link = await links.link(partner)
    if target is None or link is None:
        return None
    return target.tokens_url, target.token, parties_of(link)


class OcpiLink:
    def __init__(
        self, client: OcpiClient, links: LinkStore, token_of: TokenOf, *, timeout_s: float = 5.0
    ) -> None:
        self._links = links
        self._verifier = OcpiVerifier(client, self._target, token_of, timeout_s=timeout_s)

    async def _target(self, partner: str) -> AuthorizeTarget | None:
        return await tokens_sender(self._links, partner)

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> VerifyOutcome:
        return await self._verifier.verify(emp, uid, place)

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        return Delivery(
            DeliveryStatus.RETRY,
            f"OCPI delivery of {kind} is not in this build yet: kept pending",
            retry_after_s=NOT_BUILT_RETRY_S,
        )
