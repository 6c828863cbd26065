"""The partners and their protocols, as the composition root wires them.

The core learns per EMP what it is owed, in its own terms (bridge/settings.Partner), and
talks to every EMP through one EmpLink: `EmpRouter`, which hands each EMP's deliveries and
verifications to the adapter of that EMP's protocol. Adapters never see each other; this
module (like app.py) is the only place that knows them all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.model import Delivery, DeliveryStatus, Place, VerifyOutcome
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.ports import EmpLink
from cpo_gateway.bridge.settings import Partner
from cpo_gateway.config import EmpConfig
from cpo_gateway.metrics import EmpSeries
from cpo_gateway.oioi import client as oioi_client

log = logs.get(__name__)


@dataclass(frozen=True, slots=True)
class Terms:
    """What a protocol's partners are owed and how their stations may change."""

    wants: frozenset[Owed]
    fixed_connectors: bool
    offline_detail: bool = False  # an Offline EVSE is told a fault from a switch-off


# OIOI carries station data, EVSE statuses and CDRs (one call each) and forbids changing the
# connectors of a station the EMP has. OCPI 2.2.1 adds sessions (PUT/PATCH while they run)
# and asynchronous command results, and lets a location's EVSEs change.
TERMS: dict[str, Terms] = {
    "oioi": Terms(oioi_client.CARRIED, fixed_connectors=True),
    "ocpi": Terms(frozenset(Owed), fixed_connectors=False, offline_detail=True),
}


# The protocols whose adapter the gateway builds itself (Gateway takes others, e.g. in tests):
# OCPI's (ocpi/link.py) with the [ocpi] table, which the config requires for an OCPI partner.
BUILT_IN = frozenset({"oioi", "ocpi"})


def partner_terms(emp: EmpConfig) -> Partner:
    """An [[emp]] table as the core sees the partner."""
    terms = TERMS[emp.protocol]
    return Partner(
        emp.name,
        emp.partner_identifier,
        emp.online_authorization,
        accept_when_unreachable=emp.offline_policy == "accept",
        verify_timeout_s=emp.verify_timeout_s,
        concurrency=emp.concurrency,
        wants=terms.wants,
        fixed_connectors=terms.fixed_connectors,
        offline_detail=terms.offline_detail,
    )


def partners_of(emps: Sequence[EmpConfig]) -> list[Partner]:
    return [partner_terms(e) for e in emps]


def series_of(emps: Sequence[EmpConfig]) -> list[EmpSeries]:
    """How /metrics labels each EMP's figures: an OIOI EMP's by its OIOI call names (what
    dashboards were built on), any other's by the core's own kind names."""
    out = []
    for emp in emps:
        wants = sorted(TERMS[emp.protocol].wants)
        if emp.protocol == "oioi":
            kinds = {k.value: oioi_client.CALLS[k] for k in wants}
            requests = (oioi_client.VERIFY_KIND, *kinds.values())
            out.append(EmpSeries(emp.name, kinds, requests))
        else:
            out.append(EmpSeries(emp.name, {k.value: k.value for k in wants}))
    return out


class EmpRouter:
    """The core's EmpLink: each EMP's traffic goes to the adapter of its protocol."""

    def __init__(self, links: Mapping[str, EmpLink]) -> None:
        """`links`: EMP name -> the adapter that serves it."""
        self._links = dict(links)

    def serves(self, emp: str) -> bool:
        return emp in self._links

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> VerifyOutcome:
        link = self._links.get(emp)
        if link is None:
            log.error("emp.not_routed", emp=emp, what="verify")
            return VerifyOutcome.UNREACHABLE
        return await link.verify(emp, uid, place)

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        link = self._links.get(emp)
        if link is None:
            log.error("emp.not_routed", emp=emp, what="deliver", kind=kind)
            return Delivery(DeliveryStatus.REJECTED, f"no adapter serves EMP {emp!r}")
        return await link.deliver(emp, kind, payload)


def route(emps: Sequence[EmpConfig], adapters: Mapping[str, EmpLink]) -> EmpRouter:
    """The router for these EMPs, given one adapter per protocol; EMPs of a protocol with
    no adapter are left out (see `unserved`)."""
    return EmpRouter({e.name: adapters[e.protocol] for e in emps if e.protocol in adapters})


def unserved(emps: Sequence[EmpConfig], protocols: Collection[str] = BUILT_IN) -> list[str]:
    """'name (protocol)' of EMPs whose protocol none of `protocols` (those with an
    adapter) is."""
    return [f"{e.name} ({e.protocol})" for e in emps if e.protocol not in protocols]
