"""OCPI Locations (sender) from the stations file: Location -> EVSE -> Connector.

A station is a Location (its id is the station id); the connectors that share an EVSE ID
are one EVSE (`evse_id` = the EVSE ID; `uid` the EVSE ID too, without its '*' separators when
it is longer than OCPI's 36 characters); each connector of the EVSE is a Connector numbered
"1", "2", ... in the file's order. What OCPI requires and the file does not say is derived:
power type, voltage and amperage from the connector type and `speed_kw` (the file's
`power_type`, `max_voltage`, `max_amperage` win), the time zone from the country when it has
only one.

EVSE status: the core's protocol-neutral status (which already keeps a connector that
reports Unavailable or Faulted while energy flows Occupied) refined by what the charger
reported: Occupied -> CHARGING, Offline -> OUTOFORDER for a fault, INOPERATIVE when switched
off, UNKNOWN when the charger is not connected. BLOCKED and PLANNED are never derived (OCPP
cannot tell); REMOVED is what an EVSE gone from the file is patched to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cpo_gateway.bridge.catalogue import Catalogue, Connector, Station
from cpo_gateway.bridge.model import ConnectorState, EvseStatus
from cpo_gateway.isocodes import ALPHA3, SINGLE_ZONE
from cpo_gateway.ocpi.ports import EvseState, stamp
from cpo_gateway.ocpi.transport import Party

# Project connector type -> (OCPI ConnectorType, ConnectorFormat, default power type).
# Nearest values where OCPI has none: Cee2Poles and CeeBlue (single-phase CEE), CeePlus and
# Marechal (three-phase industrial), T15/T23 (Swiss domestic, DOMESTIC_J).
STANDARDS: dict[str, tuple[str, str, str]] = {
    "Type2": ("IEC_62196_T2", "SOCKET", "AC_3_PHASE"),
    "Combo": ("IEC_62196_T2_COMBO", "CABLE", "DC"),
    "Chademo": ("CHADEMO", "CABLE", "DC"),
    "Schuko": ("DOMESTIC_F", "SOCKET", "AC_1_PHASE"),
    "Type3": ("IEC_62196_T3C", "SOCKET", "AC_3_PHASE"),
    "CeeBlue": ("IEC_60309_2_single_16", "SOCKET", "AC_1_PHASE"),
    "3PinSquare": ("DOMESTIC_G", "SOCKET", "AC_1_PHASE"),
    "Type1": ("IEC_62196_T1", "CABLE", "AC_1_PHASE"),
    "CeeRed": ("IEC_60309_2_three_16", "SOCKET", "AC_3_PHASE"),
    "Cee2Poles": ("IEC_60309_2_single_16", "SOCKET", "AC_1_PHASE"),
    "Tesla": ("TESLA_S", "CABLE", "DC"),
    "Scame": ("IEC_62196_T3A", "SOCKET", "AC_1_PHASE"),
    "Nema5": ("NEMA_5_20", "SOCKET", "AC_1_PHASE"),
    "CeePlus": ("IEC_60309_2_three_32", "SOCKET", "AC_3_PHASE"),
    "T13": ("DOMESTIC_J", "SOCKET", "AC_1_PHASE"),
    "T15": ("DOMESTIC_J", "SOCKET", "AC_3_PHASE"),
    "T23": ("DOMESTIC_J", "SOCKET", "AC_1_PHASE"),
    "Marechal": ("IEC_60309_2_three_32", "SOCKET", "AC_3_PHASE"),
    "TypeE": ("DOMESTIC_E", "SOCKET", "AC_1_PHASE"),
}
AC_VOLTS = 230  # line to neutral
DC_VOLTS = 500
SINGLE_PHASE_MAX_KW = 7.4  # a three-phase type rated at most this is wired single-phase
_WEEKDAY = {"Mo": 1, "Tu": 2, "We": 3, "Th": 4, "Fr": 5, "Sa": 6, "Su": 7}
_REMOTE = "REMOTE_START_STOP_CAPABLE"


def ocpi_status(state: EvseState | None) -> str:
    if state is None:
        return "UNKNOWN"
    match state.status:
        case EvseStatus.AVAILABLE:
            return "AVAILABLE"
        case EvseStatus.OCCUPIED:
            return "CHARGING"
        case EvseStatus.RESERVED:
            return "RESERVED"
        case EvseStatus.OFFLINE if state.reported is ConnectorState.FAULTED:
            return "OUTOFORDER"
        case EvseStatus.OFFLINE if state.reported is ConnectorState.UNAVAILABLE:
            return "INOPERATIVE"
    return "UNKNOWN"


def evse_uid(evse_id: str) -> str:
    """An EVSE's uid (the EVSE ID, at most 36 characters: a longer one loses its separators
    and is cut)."""
    return evse_id if len(evse_id) <= 36 else evse_id.replace("*", "")[:36]


def time_zone(station: Station) -> str:
    return station.time_zone or SINGLE_ZONE.get(station.address.country, "UTC")


class Locations:
    """Renders the catalogue's stations as OCPI Locations for one party (us)."""

    def __init__(
        self,
        catalogue: Catalogue,
        states: Mapping[str, EvseState],
        us: Party,
        loaded_at: datetime,
        business_name: str | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._states = states
        self._us = us
        self._loaded_at = loaded_at
        self._business_name = business_name

    def all(self) -> list[dict[str, Any]]:
        return [self.location(st) for st in self._catalogue.stations]

    def find(self, location_id: str) -> Station | None:
        return next((s for s in self._catalogue.stations if s.id == location_id), None)

    def location(self, station: Station) -> dict[str, Any]:
        evses = [self._evse(station, evse_id) for evse_id in _evse_ids(station)]
        addr = station.address
        street = " ".join(p for p in (addr.street, addr.street_number) if p)
        body: dict[str, Any] = {
            "country_code": self._us.country_code,
            "party_id": self._us.party_id,
            "id": station.id,
            "publish": station.is_private is not True,
        }
        if station.name:
            body["name"] = station.name[:255]
        body |= {
            "address": street[:45],
            "city": addr.city[:45],
            "postal_code": addr.zip[:10],
            "country": ALPHA3.get(addr.country, addr.country),
            "coordinates": {
                "latitude": f"{station.latitude:.6f}",
                "longitude": f"{station.longitude:.6f}",
            },
            "evses": evses,
        }
        if self._business_name:
            body["operator"] = {"name": self._business_name[:100]}
        body["time_zone"] = time_zone(station)
        body["opening_times"] = _hours(station)
        body["last_updated"] = max(
            (e["last_updated"] for e in evses), default=stamp(self._loaded_at)
        )
        return body

    def evse(self, station: Station, uid: str) -> dict[str, Any] | None:
        for evse_id in _evse_ids(station):
            if evse_uid(evse_id) == uid:
                return self._evse(station, evse_id)
        return None

    def connector(self, station: Station, uid: str, connector_id: str) -> dict[str, Any] | None:
        evse = self.evse(station, uid)
        if evse is None:
            return None
        return next((c for c in evse["connectors"] if c["id"] == connector_id), None)

    def _evse(self, station: Station, evse_id: str) -> dict[str, Any]:
        state = self._states.get(evse_id)
        connectors = [c for c in station.connectors if c.evse_id == evse_id]
        updated = self._loaded_at
        if state is not None and state.updated_at is not None and state.updated_at > updated:
            updated = state.updated_at
        body: dict[str, Any] = {
            "uid": evse_uid(evse_id),
            "evse_id": evse_id,
            "status": ocpi_status(state),
            "capabilities": [_REMOTE, "RESERVABLE"] if station.is_reservable else [_REMOTE],
            "connectors": [self._connector(c, str(i)) for i, c in enumerate(connectors, 1)],
        }
        if station.floor_level is not None and len(str(station.floor_level)) <= 4:
            body["floor_level"] = str(station.floor_level)
        body["last_updated"] = stamp(updated)
        return body

    def _connector(self, conn: Connector, number: str) -> dict[str, Any]:
        standard, fmt, power_type = STANDARDS.get(
            conn.type, ("IEC_62196_T2", "SOCKET", "AC_3_PHASE")
        )
        if conn.power_type is not None:
            power_type = conn.power_type
        elif power_type == "AC_3_PHASE" and conn.speed_kw <= SINGLE_PHASE_MAX_KW:
            power_type = "AC_1_PHASE"
        watts = round(conn.speed_kw * 1000)
        volts = conn.max_voltage or (DC_VOLTS if power_type == "DC" else AC_VOLTS)
        phases = 3 if power_type == "AC_3_PHASE" else 1
        amps = conn.max_amperage or max(1, math.ceil(watts / (volts * phases)))
        body: dict[str, Any] = {
            "id": number,
            "standard": standard,
            "format": fmt,
            "power_type": power_type,
            "max_voltage": volts,
            "max_amperage": amps,
            "max_electric_power": watts,
        }
        if conn.tariff is not None:
            body["tariff_ids"] = [conn.tariff]
        body["last_updated"] = stamp(self._loaded_at)
        return body


def electrics(conn: Connector) -> dict[str, Any]:
    """standard, format, power_type, max_voltage, max_amperage, max_electric_power."""
    standard, fmt, power_type = STANDARDS.get(conn.type, ("IEC_62196_T2", "SOCKET", "AC_3_PHASE"))
    if conn.power_type is not None:
        power_type = conn.power_type
    elif power_type == "AC_3_PHASE" and conn.speed_kw <= SINGLE_PHASE_MAX_KW:
        power_type = "AC_1_PHASE"
    watts = round(conn.speed_kw * 1000)
    volts = conn.max_voltage or (DC_VOLTS if power_type == "DC" else AC_VOLTS)
    phases = 3 if power_type == "AC_3_PHASE" else 1
    amps = conn.max_amperage or max(1, math.ceil(watts / (volts * phases)))
    return {
        "standard": standard,
        "format": fmt,
        "power_type": power_type,
        "max_voltage": volts,
        "max_amperage": amps,
        "max_electric_power": watts,
    }


@dataclass(frozen=True, slots=True)
class Place:
    """Where a session runs, as OCPI names it: location, EVSE, connector."""

    station: Station
    evse_id: str
    connector: Connector
    connector_id: str  # "1", "2", ... within the EVSE

    @property
    def evse_uid(self) -> str:
        return evse_uid(self.evse_id)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(time_zone(self.station))

    def cdr_location(self) -> dict[str, Any]:
        st, addr = self.station, self.station.address
        street = " ".join(p for p in (addr.street, addr.street_number) if p)
        facts = electrics(self.connector)
        body: dict[str, Any] = {"id": st.id}
        if st.name:
            body["name"] = st.name[:255]
        return body | {
            "address": street[:45],
            "city": addr.city[:45],
            "postal_code": addr.zip[:10],
            "country": ALPHA3.get(addr.country, addr.country),
            "coordinates": {"latitude": f"{st.latitude:.6f}", "longitude": f"{st.longitude:.6f}"},
            "evse_uid": self.evse_uid,
            "evse_id": self.evse_id,
            "connector_id": self.connector_id,
            "connector_standard": facts["standard"],
            "connector_format": facts["format"],
            "connector_power_type": facts["power_type"],
        }


def place_of(
    catalogue: Catalogue, evse_id: str, connector: Connector | None = None
) -> Place | None:
    """The place of a session on `evse_id` (on `connector` when known, else the EVSE's first)."""
    station = catalogue.station_of(evse_id)
    conns = catalogue.evse(evse_id)
    if station is None or not conns:
        return None
    index = conns.index(connector) if connector in conns else 0
    return Place(station, evse_id, conns[index], str(index + 1))


def status_patch(state: EvseState | None, at: datetime, *, removed: bool = False) -> dict[str, str]:
    """The PATCH body of an EVSE status change (PATCH {locations}/{cc}/{pid}/{loc}/{uid})."""
    return {"status": "REMOVED" if removed else ocpi_status(state), "last_updated": stamp(at)}


def _evse_ids(station: Station) -> list[str]:
    return list(dict.fromkeys(c.evse_id for c in station.connectors))


def _hours(station: Station) -> dict[str, Any]:
    if station.is_open_24 or not station.open_hour_notes:
        return {"twentyfourseven": True}
    regular = []
    for note in station.open_hour_notes:
        first, last = _WEEKDAY[note.days[0]], _WEEKDAY[note.days[1]]
        span = range(first, last + 1) if first <= last else [*range(first, 8), *range(1, last + 1)]
        begin, end = note.times
        for day in span:
            regular.append(
                {
                    "weekday": day,
                    "period_begin": begin,
                    "period_end": "23:59" if end == "24:00" else end,
                }
            )
    regular.sort(key=lambda r: (r["weekday"], r["period_begin"]))
    return {"twentyfourseven": False, "regular_hours": regular}


def ocpi_problems(catalogue: Catalogue) -> list[str]:
    """What keeps the stations file from rendering as valid OCPI Locations (for
    check-config when OCPI partners are configured): ids too long for OCPI's CiStrings, and
    stations whose time zone is not known."""
    problems = []
    for i, st in enumerate(catalogue.stations):
        if len(st.id) > 36 or not st.id.isascii():
            problems.append(
                f"station[{i}].id: expected at most 36 ASCII characters (the OCPI location id), found {st.id!r}"
            )
        if st.time_zone is None and st.address.country not in SINGLE_ZONE:
            problems.append(
                f"station[{i}].time_zone: expected an IANA time zone (country {st.address.country!r} has several), found nothing"
            )
        for j, c in enumerate(st.connectors):
            if len(c.evse_id) > 48:
                problems.append(
                    f"station[{i}].connector[{j}].evse_id: expected at most 48 characters (OCPI evse_id), found {c.evse_id!r}"
                )
    return problems
