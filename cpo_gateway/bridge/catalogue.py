"""Static station data (the CPO's catalogue) and the lookups the core needs from it.

The catalogue is loaded from the stations file by config.py; each connector names the OCPP
charge point and connector that serve it. Several connectors may share one EVSE ID: they
share one status and one session at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields

from cpo_gateway.bridge.model import Place
from cpo_gateway.bridge.tariff import Tariff

CONNECTOR_TYPES = (
    "Type2", "Combo", "Chademo", "Schuko", "Type3", "CeeBlue", "3PinSquare", "Type1", "CeeRed",
    "Cee2Poles", "Tesla", "Scame", "Nema5", "CeePlus", "T13", "T15", "T23", "Marechal", "TypeE",
)  # fmt: skip
WEEKDAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")


@dataclass(frozen=True, slots=True)
class Address:
    street: str
    street_number: str
    city: str
    zip: str
    country: str  # ISO 3166-1 alpha-2


@dataclass(frozen=True, slots=True)
class Contact:
    phone: str
    fax: str | None = None
    website: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class OpeningHours:
    times: tuple[str, str]  # ("07:30", "19:00")
    days: tuple[str, str]  # ("Mo", "Fr")


@dataclass(frozen=True, slots=True)
class Connector:
    evse_id: str
    type: str
    speed_kw: float
    charge_point: str  # OCPP charge point id
    connector: int  # OCPP connector id (1-based)
    # For chargers that number connectors per EVSE: this connector's EVSE (default: the
    # connector number) and its connector on that EVSE (default 1).
    evse_index: int | None = None
    evse_connector: int | None = None
    # Roaming detail beyond OIOI's (None: derived from type and speed_kw when rendered).
    tariff: str | None = None  # a [[tariff]] id
    power_type: str | None = None  # "AC_1_PHASE", "AC_3_PHASE", "DC"
    max_voltage: int | None = None  # V (line to neutral for AC)
    max_amperage: int | None = None  # A

    @property
    def evse_address(self) -> tuple[int, int]:
        """(EVSE number, connector on that EVSE) as such a charger names this connector."""
        evse = self.evse_index if self.evse_index is not None else self.connector
        return evse, self.evse_connector if self.evse_connector is not None else 1


@dataclass(frozen=True, slots=True)
class Station:
    id: str
    name: str
    latitude: float
    longitude: float
    address: Address
    contact: Contact
    cpo_id: str
    is_open_24: bool
    connectors: tuple[Connector, ...]
    description: str | None = None
    open_hour_notes: tuple[OpeningHours, ...] = ()
    notes: str | None = None
    is_reservable: bool | None = None
    floor_level: int | None = None
    is_free_charge: bool | None = None
    total_parking: int | None = None
    is_green_power_available: bool | None = None
    is_plugin_charge: bool | None = None
    is_roofed: bool | None = None
    is_private: bool | None = None
    time_zone: str | None = None  # IANA, e.g. Europe/Berlin (None: the country's only one)


@dataclass(frozen=True, slots=True)
class ChargerAuth:
    """Per-charger security settings from the stations file."""

    charge_point_id: str
    security_profile: int = 0  # 0 none, 1 Basic auth, 2 Basic auth over TLS, 3 client cert
    password_hash: str | None = None  # scrypt$... ; the DB may hold a newer one


@dataclass(frozen=True)
class Catalogue:
    stations: tuple[Station, ...] = ()
    chargers: tuple[ChargerAuth, ...] = ()
    tariffs: tuple[Tariff, ...] = ()
    _by_evse: dict[str, tuple[Connector, ...]] = field(init=False, repr=False, compare=False)
    _by_ocpp: dict[tuple[str, int], Connector] = field(init=False, repr=False, compare=False)
    _station_of: dict[str, Station] = field(init=False, repr=False, compare=False)
    _cp_ids: frozenset[str] = field(init=False, repr=False, compare=False)
    _auth: dict[str, ChargerAuth] = field(init=False, repr=False, compare=False)
    _by_cp: dict[str, tuple[Connector, ...]] = field(init=False, repr=False, compare=False)
    _by_address: dict[tuple[str, int, int], Connector] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_evse: dict[str, list[Connector]] = {}
        by_ocpp: dict[tuple[str, int], Connector] = {}
        station_of: dict[str, Station] = {}
        for station in self.stations:
            for conn in station.connectors:
                by_evse.setdefault(conn.evse_id, []).append(conn)
                by_ocpp[(conn.charge_point, conn.connector)] = conn
                station_of[conn.evse_id] = station
        object.__setattr__(self, "_by_evse", {k: tuple(v) for k, v in by_evse.items()})
        object.__setattr__(self, "_by_ocpp", by_ocpp)
        object.__setattr__(
            self,
            "_by_address",
            {(c.charge_point, *c.evse_address): c for c in by_ocpp.values()},
        )
        object.__setattr__(self, "_station_of", station_of)
        # Looked up on every charger handshake and Boot: built once.
        cp_ids = {c.charge_point for c in by_ocpp.values()} | {
            a.charge_point_id for a in self.chargers
        }
        object.__setattr__(self, "_cp_ids", frozenset(cp_ids))
        object.__setattr__(self, "_auth", {a.charge_point_id: a for a in self.chargers})
        by_cp: dict[str, list[Connector]] = {}
        for conn in self.connectors():
            by_cp.setdefault(conn.charge_point, []).append(conn)
        object.__setattr__(self, "_by_cp", {k: tuple(v) for k, v in by_cp.items()})

    def connectors(self) -> Iterator[Connector]:
        for station in self.stations:
            yield from station.connectors

    def evse(self, evse_id: str) -> tuple[Connector, ...]:
        """The connectors behind an EVSE ID (empty when unknown)."""
        return self._by_evse.get(evse_id, ())

    def evse_ids(self) -> Iterable[str]:
        return self._by_evse.keys()

    def connector_at(self, charge_point_id: str, connector_id: int) -> Connector | None:
        return self._by_ocpp.get((charge_point_id, connector_id))

    def connector_by_address(
        self, charge_point_id: str, evse: int, evse_connector: int
    ) -> Connector | None:
        """The connector a charger that numbers per EVSE calls (evse, evse_connector)."""
        return self._by_address.get((charge_point_id, evse, evse_connector))

    def station_of(self, evse_id: str) -> Station | None:
        return self._station_of.get(evse_id)

    def charge_point_ids(self) -> frozenset[str]:
        return self._cp_ids

    def connectors_of(self, charge_point_id: str) -> tuple[Connector, ...]:
        return self._by_cp.get(charge_point_id, ())

    def place_of(self, charge_point_id: str, connector_id: int | None = None) -> Place | None:
        """The station a charger belongs to and its EVSEs (that connector's, when given)."""
        connectors = self.connectors_of(charge_point_id)
        if connector_id is not None:
            connectors = tuple(c for c in connectors if c.connector == connector_id) or connectors
        if not connectors:
            return None
        station = self.station_of(connectors[0].evse_id)
        if station is None:
            return None
        evses = tuple(
            dict.fromkeys(c.evse_id for c in connectors if self.station_of(c.evse_id) is station)
        )
        return Place(station.id, evses)

    def charger_auth(self, charge_point_id: str) -> ChargerAuth | None:
        return self._auth.get(charge_point_id)

    def tariff(self, tariff_id: str) -> Tariff | None:
        return next((t for t in self.tariffs if t.id == tariff_id), None)

    def adopt(self, other: Catalogue) -> None:
        """Take over another catalogue's contents in place: a reload of the stations file.

        The one change a catalogue allows. Every part holds the same object, so all of them
        see the new file from their next lookup on; the event loop runs no other code between
        the assignments, so no lookup ever sees half of each."""
        for f in fields(self):
            object.__setattr__(self, f.name, getattr(other, f.name))
