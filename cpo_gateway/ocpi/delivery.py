"""The core's EmpLink for partners that speak OCPI: each outbox row, in the core's words,
becomes one request to the partner's Receiver interface (ocpi/push.py says which), sent with
the token we hold for that partner (Token C) and judged as the outbox judges any delivery.

- A success is a 2xx whose body is an envelope with a 1xxx status_code; HTML, an empty body,
  a 3000/3001 or a 5xx is worth a retry; another 2xxx/4xx is refused (dead letter, visible
  and re-queueable); a 401 pauses the partner (ocpi/client.py: delivery_of).
- A CDR is POSTed with its stable id (the session's): a retry after a lost answer carries the
  same id, so a receiver that keys on it bills once.
- A command result is POSTed to the response_url the partner gave with its command.
- A partner not registered yet (no Token C) keeps its rows: retried, never dead-lettered.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.links import LinkState, LinkStore, PartnerLink
from cpo_gateway.bridge.model import Delivery, DeliveryStatus, VerifyOutcome
from cpo_gateway.bridge.owed import CommandOutcome, Owed
from cpo_gateway.ocpi.client import OcpiCallFailed, OcpiClient, delivery_of, unreachable
from cpo_gateway.ocpi.commands import CommandResultType, command_result
from cpo_gateway.ocpi.ports import EvseState
from cpo_gateway.ocpi.push import PushContext, render_push
from cpo_gateway.ocpi.registration import endpoints_of, parties_of
from cpo_gateway.ocpi.sessions import NotRenderable
from cpo_gateway.ocpi.transport import Party

log = logs.get(__name__)
NOT_REGISTERED_RETRY_S = 30.0
LINK_TTL_S = 2.0
_RESULTS = {t.value.lower(): t for t in CommandResultType}


def result_type(result: str) -> CommandResultType:
    """The CommandResultType of a neutral result value (bridge.commands.Result)."""
    return _RESULTS.get(result, CommandResultType.FAILED)


class OcpiDelivery:
    def __init__(
        self,
        client: OcpiClient,
        links: LinkStore,
        *,
        ours: Party,
        catalogue: Callable[[], Catalogue],
        loaded_at: Callable[[], datetime],
        evse_states: Callable[[str], Awaitable[Mapping[str, EvseState]]],
        business_name: str | None = None,
        verifier: Callable[[str, str], Awaitable[VerifyOutcome]] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`evse_states(partner)`: the EVSE statuses as that partner is told them (read for
        a Location PUT only); `verifier(partner, uid)`: real-time authorization (the tokens
        module's), UNREACHABLE without one."""
        self._client = client
        self._links = links
        self._ours = ours
        self._catalogue = catalogue
        self._loaded_at = loaded_at
        self._evse_states = evse_states
        self._business_name = business_name
        self._verifier = verifier
        self._cache: dict[str, tuple[float, PartnerLink]] = {}
        self._now = now

    async def verify(self, emp: str, uid: str) -> VerifyOutcome:
        if self._verifier is None:
            return VerifyOutcome.UNREACHABLE
        return await self._verifier(emp, uid)

    async def _link(self, emp: str) -> PartnerLink | None:
        """The partner's link, read at most every LINK_TTL_S: a push of thousands of rows
        does not read the same row thousands of times (a refused token drops it at once)."""
        cached = self._cache.get(emp)
        now = time.monotonic()
        if cached is not None and now - cached[0] < LINK_TTL_S:
            return cached[1]
        link = await self._links.link(emp)
        if link is not None and link.state is LinkState.REGISTERED:
            self._cache[emp] = (now, link)  # not registered yet: asked again next time
        return link

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        link = await self._link(emp)
        if link is None or link.state is not LinkState.REGISTERED or not link.token_out:
            return Delivery(
                DeliveryStatus.RETRY, "not registered with the partner yet", NOT_REGISTERED_RETRY_S
            )
        parties = sorted(parties_of(link), key=str)
        emsp = parties[0] if parties else None
        if kind == Owed.COMMAND_RESULT:
            outcome = CommandOutcome.from_dict(dict(payload))
            body = command_result(result_type(outcome.result), outcome.detail)
            return await self._send(emp, "POST", outcome.reference, link.token_out, body, emsp)
        if emsp is None:
            return Delivery(DeliveryStatus.REJECTED, "the partner's credentials name no party")
        states: Mapping[str, EvseState] = {}
        if kind == Owed.STATION:
            states = await self._evse_states(emp)
        ctx = PushContext(
            self._catalogue(), self._ours, emsp, self._loaded_at(), states, self._business_name
        )
        key = str(payload.get("session_id") or payload.get("evse_id") or "")
        try:
            push = render_push(ctx, kind, key, payload, self._now())
        except (NotRenderable, KeyError, ValueError, TypeError) as exc:
            return Delivery(DeliveryStatus.REJECTED, f"cannot render {kind}: {exc}"[:200])
        if push is None:
            return Delivery(DeliveryStatus.DELIVERED, f"{kind}: nothing owed in OCPI")
        base = endpoints_of(link).url(push.module, "RECEIVER")
        if base is None:
            return Delivery(DeliveryStatus.REJECTED, f"the partner has no {push.module} receiver")
        url = base.rstrip("/") + push.path
        return await self._send(emp, push.method, url, link.token_out, push.body, emsp)

    async def _send(
        self,
        emp: str,
        method: str,
        url: str,
        token: str,
        body: dict[str, Any],
        to: Party | None,
    ) -> Delivery:
        try:
            reply = await self._client.request(method, url, token, body, to=to)
        except OcpiCallFailed as exc:
            return unreachable(exc)
        delivery = delivery_of(reply)
        if delivery.status is DeliveryStatus.UNAUTHORIZED:
            self._cache.pop(emp, None)  # credentials may have changed: read them again
        if delivery.status is not DeliveryStatus.DELIVERED:
            log.info("ocpi.push_failed", emp=emp, method=method, detail=delivery.detail)
        return delivery
