"""Delivery of the outbox's neutral rows to an OCPI partner's Receiver interfaces.

`OcpiDeliverer.deliver(emp, kind, payload)` is the `deliver` of the core's EmpLink port for
OCPI partners: the row is rendered (push.py), sent with the token the partner gave us (C),
to the receiver endpoint it listed in its version details, and the answer judged by the
client's rules (client.py `delivery_of`: only a parseable 1xxx envelope is delivered).

- Not registered yet (no token C): RETRY after a few seconds, the row kept.
- A row that cannot be told in OCPI (an EVSE no longer in the stations file, a payload the
  core never writes): REJECTED, dead-lettered and visible to operators.
- A PATCH the receiver refuses (it never got the object): the whole object is PUT.
- A command's result (kind command-result) is POSTed, as a CommandResult, to the
  response_url the partner gave with its command.
- A row OCPI has no request for (the early CDR of cdr_on_start), or a module the partner
  does not receive (it lists no such RECEIVER; it may GET our lists instead): DELIVERED,
  nothing sent; the detail says why.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.links import LinkState, LinkStore, PartnerLink
from cpo_gateway.bridge.model import Delivery, DeliveryStatus, Place, VerifyOutcome
from cpo_gateway.bridge.owed import CommandOutcome, Owed
from cpo_gateway.ocpi.client import OcpiCallFailed, OcpiClient, delivery_of, unreachable
from cpo_gateway.ocpi.commands import CommandResultType, command_result
from cpo_gateway.ocpi.ports import EvseState, ObjectReads
from cpo_gateway.ocpi.push import Push, PushContext, render_push
from cpo_gateway.ocpi.registration import endpoints_of, parties_of
from cpo_gateway.ocpi.sessions import NotRenderable, card_of
from cpo_gateway.ocpi.transport import Party

log = logs.get(__name__)
NOT_REGISTERED_RETRY_S = 5.0  # a cheap look-up; a registration at start takes seconds
LINK_TTL_S = 2.0
_RESULTS = {t.value.lower(): t for t in CommandResultType}


def result_type(result: str) -> CommandResultType:
    """The CommandResultType of a neutral result value (bridge.commands.Result)."""
    return _RESULTS.get(result, CommandResultType.FAILED)


_NO_STATES: Mapping[str, EvseState] = {}


class OcpiDeliverer:
    def __init__(
        self,
        client: OcpiClient,
        links: LinkStore,
        reads: ObjectReads,
        us: Party,
        *,
        business_name: str | None = None,
        timeout_s: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        verifier: Callable[[str, str, Place | None], Awaitable[VerifyOutcome]] | None = None,
    ) -> None:
        """`verifier(partner, uid)`: real-time authorization (the tokens module's); without
        one a verification is UNREACHABLE (the token's policy decides)."""
        self._client = client
        self._links = links
        self._reads = reads
        self._us = us
        self._business_name = business_name
        self._timeout_s = timeout_s
        self._clock = clock
        self._verifier = verifier
        self._cache: dict[str, tuple[float, PartnerLink]] = {}

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> VerifyOutcome:
        if self._verifier is None:
            return VerifyOutcome.UNREACHABLE
        return await self._verifier(emp, uid, place)

    async def _link(self, emp: str) -> PartnerLink | None:
        """A registered partner's link, read at most every LINK_TTL_S: a push of thousands
        of rows does not read one row thousands of times (measured: CDR push 844 -> 1,128/s
        in `scripts/bench --scenario ocpi-start`). Not registered: read again each time."""
        cached = self._cache.get(emp)
        now = time.monotonic()
        if cached is not None and now - cached[0] < LINK_TTL_S:
            return cached[1]
        link = await self._links.link(emp)
        if link is not None and link.state is LinkState.REGISTERED:
            self._cache[emp] = (now, link)
        return link

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        link = await self._link(emp)
        if link is None or link.state is not LinkState.REGISTERED or not link.token_out:
            return Delivery(
                DeliveryStatus.RETRY, "not registered yet: kept", NOT_REGISTERED_RETRY_S
            )
        parties = sorted(parties_of(link), key=str)
        if kind == Owed.COMMAND_RESULT:
            outcome = CommandOutcome.from_dict(dict(payload))
            body = command_result(result_type(outcome.result), outcome.detail)
            result = Push("commands", "POST", "", body)
            to = parties[0] if parties else None
            return await self._send(result, outcome.reference, link.token_out, to, emp)
        if not parties:
            return Delivery(DeliveryStatus.RETRY, "credentials name no party: kept", 3600.0)
        ctx = PushContext(
            self._reads.catalogue,
            self._us,
            parties[0],
            self._reads.catalogue_loaded_at(),
            # Only a Location PUT tells EVSE statuses: a CDR or session row needs no read.
            await self._reads.evse_states(emp) if kind == Owed.STATION else _NO_STATES,
            self._business_name,
            await self._reads.known_tokens(emp, card_of(kind, payload)),
        )
        try:
            push = render_push(ctx, kind, payload, self._clock())
        except (NotRenderable, KeyError, ValueError, TypeError) as exc:
            log.warning("ocpi.push_unrenderable", partner=emp, kind=kind, reason=str(exc))
            return Delivery(DeliveryStatus.REJECTED, f"cannot be told in OCPI: {exc}"[:200])
        if push is None:
            return Delivery(DeliveryStatus.DELIVERED, f"{kind}: nothing owed over OCPI")
        url = endpoints_of(link).url(push.module, "RECEIVER")
        if url is None:
            return Delivery(
                DeliveryStatus.DELIVERED, f"{push.module}: the partner receives none (it may GET)"
            )
        delivery = await self._send(push, url, link.token_out, parties[0], emp)
        if push.method == "PATCH" and delivery.status is DeliveryStatus.REJECTED:
            # The receiver does not know the object: its PUT may have been coalesced away
            # while the partner was unreachable. The whole object makes it whole.
            whole = render_push(ctx, kind, payload, self._clock(), whole=True)
            if whole is not None:
                log.info("ocpi.patch_refused_put_whole", partner=emp, kind=kind)
                delivery = await self._send(whole, url, link.token_out, parties[0], emp)
        return delivery

    async def _send(
        self, push: Push, url: str, token: str, to: Party | None, emp: str = ""
    ) -> Delivery:
        try:
            reply = await self._client.request(
                push.method,
                url.rstrip("/") + push.path,
                token,
                None if push.method == "DELETE" else push.body,
                to=to,
                timeout_s=self._timeout_s,
            )
        except OcpiCallFailed as exc:
            return unreachable(exc)
        delivery = delivery_of(reply)
        if delivery.status is DeliveryStatus.UNAUTHORIZED:
            self._cache.pop(emp, None)  # the credentials may have changed: read them again
        return delivery
