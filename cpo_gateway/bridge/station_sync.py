"""Station sync: post new and changed stations, delete removed ones, skip unchanged ones."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import orjson

from cpo_gateway import logs
from cpo_gateway.bridge.catalogue import (
    Address,
    Catalogue,
    Connector,
    Contact,
    OpeningHours,
    Station,
)
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.bridge.storage import StationStore

log = logs.get(__name__)
STATION_KIND = Owed.STATION


# How a charger numbers a connector is the charger side's business, not the EMP's: left out
# of what is posted and of the digest, so naming it changes no station and posts nothing.
_CHARGER_SIDE = ("evse_index", "evse_connector")
# Roaming detail added later: left out while unset, so a stations file without it hashes
# (and posts) exactly as before.
_IF_SET = ("tariff", "power_type", "max_voltage", "max_amperage", "time_zone")


def _posted(station: Station) -> dict[str, Any]:
    d = asdict(station)
    for c in d["connectors"]:
        for key in _CHARGER_SIDE:
            c.pop(key, None)
        for key in _IF_SET:
            if c.get(key, 0) is None:
                c.pop(key)
    if d.get("time_zone", 0) is None:
        d.pop("time_zone")
    return d


def station_payload(station: Station, partner: str, deleted: bool) -> dict[str, Any]:
    return {"station": _posted(station), "partner_identifier": partner, "deleted": deleted}


def station_from_dict(data: Mapping[str, Any]) -> Station:
    d = dict(data)
    d["address"] = Address(**d["address"])
    d["contact"] = Contact(**d["contact"])
    d["connectors"] = tuple(Connector(**c) for c in d["connectors"])
    d["open_hour_notes"] = tuple(
        OpeningHours(tuple(h["times"]), tuple(h["days"])) for h in d.get("open_hour_notes", ())
    )
    return Station(**d)


def digest(station: Station) -> str:
    return hashlib.sha256(orjson.dumps(_posted(station), option=orjson.OPT_SORT_KEYS)).hexdigest()


async def sync_stations(
    store: StationStore,
    catalogue: Catalogue,
    partners: Mapping[str, str],
    clock: Callable[[], float],
) -> int:
    """Queue station data per EMP for what changed since the last sync; returns the count."""
    queued = 0
    for emp, partner in partners.items():
        posted = await store.posted_stations(emp)
        current = {s.id: s for s in catalogue.stations}
        for sid, station in current.items():
            h = digest(station)
            last = posted.get(sid)
            if last is not None and last.hash == h and not last.deleted:
                continue
            row = NewOutbox(emp, STATION_KIND, sid, station_payload(station, partner, False))
            await store.queue_station(emp, sid, h, False, row, clock())
            queued += 1
        for sid, last in posted.items():
            if sid in current or last.deleted:
                continue
            payload = dict(last.payload, deleted=True)
            row = NewOutbox(emp, STATION_KIND, sid, payload)
            await store.queue_station(emp, sid, last.hash, True, row, clock())
            queued += 1
            log.info("station.deleted", station_id=sid, emp=emp)
    if queued:
        log.info("station.sync", queued=queued)
    return queued


def changed_connectors(catalogue: Catalogue, posted: Mapping[str, Any]) -> list[str]:
    """Problems for stations whose connectors differ from what an EMP already received:
    for EMPs whose terms say a station keeps its connectors (Partner.fixed_connectors).
    """
    problems = []
    for station in catalogue.stations:
        last = posted.get(station.id)
        if last is None or last.deleted:
            continue
        before = sorted({c["evse_id"] for c in last.payload["station"]["connectors"]})
        after = sorted({c.evse_id for c in station.connectors})
        if before != after:
            problems.append(
                f"station {station.id!r}: connectors changed from {', '.join(before)} to "
                f"{', '.join(after)}; this EMP does not allow changing the connectors of an "
                "existing station: delete it (remove it from the stations file, let the gateway "
                "post the deletion) and add it again under a new station id"
            )
    return problems
