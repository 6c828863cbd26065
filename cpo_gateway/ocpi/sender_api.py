"""The GET endpoints of the modules where the gateway is the Sender: locations, tariffs,
sessions and CDRs. Each is an `OcpiModule` (server.py mounts it under
``{base}/2.2.1/{identifier}``); lists are paginated (pagination.py), objects read through
`ObjectReads` only. A partner lists every location and tariff (they are public) but only its
own sessions and CDRs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from cpo_gateway import logs
from cpo_gateway.bridge.owed import Owed as Kind
from cpo_gateway.bridge.owed import SessionUpdate
from cpo_gateway.ocpi.cdrs import Cdrs
from cpo_gateway.ocpi.locations import Locations
from cpo_gateway.ocpi.pagination import DEFAULT_MAX_LIMIT, list_response, parse_datetime
from cpo_gateway.ocpi.ports import ObjectReads, Owed, stamp
from cpo_gateway.ocpi.server import OcpiModule, caller
from cpo_gateway.ocpi.sessions import NotRenderable, Sessions, card_of
from cpo_gateway.ocpi.tariffs import render_tariff
from cpo_gateway.ocpi.transport import (
    OcpiError,
    OcpiStatus,
    Party,
    ocpi_json_response,
    routing_from,
)
from cpo_gateway.ocpi.versions import module_url

log = logs.get(__name__)
SENDER = "SENDER"


def _updated(body: dict[str, Any]) -> datetime:
    return parse_datetime("last_updated", body["last_updated"])


def _unknown(what: str, value: str) -> OcpiError:
    return OcpiError(OcpiStatus.UNKNOWN_LOCATION, f"{what}: unknown {value!r}", 404)


class _Sender:
    identifier = ""
    role = SENDER

    def __init__(
        self,
        reads: ObjectReads,
        us: Party,
        base_url: Callable[[], str],
        *,
        business_name: str | None = None,
        max_limit: int = DEFAULT_MAX_LIMIT,
    ) -> None:
        self._reads = reads
        self._us = us
        self._base_url = base_url
        self._business_name = business_name
        self._max_limit = max_limit

    @property
    def url(self) -> str:
        """The list's public URL (the Link header's base)."""
        return module_url(self._base_url(), self.identifier)

    def _page(self, request: web.Request, bodies: list[dict[str, Any]]) -> web.Response:
        return list_response(
            request, bodies, _updated, lambda b: b, self.url, max_limit=self._max_limit
        )


class LocationsApi(_Sender):
    identifier = "locations"

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix, self._list)
        router.add_get(prefix + "/{location_id}", self._location)
        router.add_get(prefix + "/{location_id}/{evse_uid}", self._evse)
        router.add_get(prefix + "/{location_id}/{evse_uid}/{connector_id}", self._connector)

    async def _locations(self, request: web.Request) -> Locations:
        states = await self._reads.evse_states(caller(request).partner)
        loaded = self._reads.catalogue_loaded_at()
        return Locations(self._reads.catalogue, states, self._us, loaded, self._business_name)

    async def _list(self, request: web.Request) -> web.Response:
        return self._page(request, (await self._locations(request)).all())

    async def _location(self, request: web.Request) -> web.Response:
        locs = await self._locations(request)
        station = locs.find(request.match_info["location_id"])
        if station is None:
            raise _unknown("location_id", request.match_info["location_id"])
        return ocpi_json_response(locs.location(station))

    async def _evse(self, request: web.Request) -> web.Response:
        locs = await self._locations(request)
        station = locs.find(request.match_info["location_id"])
        if station is None:
            raise _unknown("location_id", request.match_info["location_id"])
        evse = locs.evse(station, request.match_info["evse_uid"])
        if evse is None:
            raise _unknown("evse_uid", request.match_info["evse_uid"])
        return ocpi_json_response(evse)

    async def _connector(self, request: web.Request) -> web.Response:
        locs = await self._locations(request)
        info = request.match_info
        station = locs.find(info["location_id"])
        if station is None:
            raise _unknown("location_id", info["location_id"])
        if locs.evse(station, info["evse_uid"]) is None:
            raise _unknown("evse_uid", info["evse_uid"])
        conn = locs.connector(station, info["evse_uid"], info["connector_id"])
        if conn is None:
            raise _unknown("connector_id", info["connector_id"])
        return ocpi_json_response(conn)


class TariffsApi(_Sender):
    identifier = "tariffs"

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix, self._list)

    async def _list(self, request: web.Request) -> web.Response:
        at = stamp(self._reads.catalogue_loaded_at())
        cc, pid = self._us.country_code, self._us.party_id
        bodies = [render_tariff(t, cc, pid, at) for t in self._reads.catalogue.tariffs]
        return self._page(request, bodies)


def emsp_of(request: web.Request) -> Party:
    """The caller's party its sessions and CDRs name: the one its OCPI-from-* headers say
    (the server checked it is one of its own), else the first of its credentials."""
    sender = routing_from(request)
    if sender is not None:
        return sender
    parties = sorted(caller(request).parties, key=str)
    if not parties:
        raise OcpiError(OcpiStatus.NOT_ENOUGH_INFORMATION, "credentials: no party of yours known")
    return parties[0]


class SessionsApi(_Sender):
    identifier = "sessions"

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix, self._list)

    async def _list(self, request: web.Request) -> web.Response:
        partner = caller(request).partner
        owed = await self._reads.sessions(partner)
        cards = [c for o in owed for c in card_of(Kind.SESSION, o.payload)]
        tokens = await self._reads.known_tokens(partner, cards)
        render = Sessions(self._reads.catalogue, self._us, emsp_of(request), tokens)
        return self._page(
            request,
            _rendered(
                owed, lambda o: render.session(SessionUpdate.from_dict(dict(o.payload)), o.payload)
            ),
        )


class CdrsApi(_Sender):
    identifier = "cdrs"

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix, self._list)

    async def _list(self, request: web.Request) -> web.Response:
        partner = caller(request).partner
        owed = await self._reads.cdrs(partner)
        cards = [c for o in owed for c in card_of(Kind.CDR, o.payload)]
        tokens = await self._reads.known_tokens(partner, cards)
        render = Cdrs(self._reads.catalogue, self._us, emsp_of(request), tokens)
        return self._page(request, _rendered(owed, lambda o: render.cdr(o.payload, o.last_updated)))


def _rendered(
    owed: Sequence[Owed], render: Callable[[Owed], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every owed object that renders; one that does not is logged and left out (a CDR of a
    session not ended, an EVSE gone from the stations file)."""
    out = []
    for item in owed:
        try:
            out.append(render(item))
        except (NotRenderable, KeyError, ValueError) as exc:
            log.warning("ocpi.object_skipped", key=item.key, reason=str(exc))
    return out


def sender_modules(
    reads: ObjectReads,
    us: Party,
    base_url: Callable[[], str],
    *,
    business_name: str | None = None,
    max_limit: int = DEFAULT_MAX_LIMIT,
) -> list[OcpiModule]:
    """The four Sender modules, for OcpiServer(modules=...)."""
    return [
        cls(reads, us, base_url, business_name=business_name, max_limit=max_limit)
        for cls in (LocationsApi, TariffsApi, SessionsApi, CdrsApi)
    ]
