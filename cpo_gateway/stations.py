"""The stations file: the CPO's catalogue of stations and connectors, and charger security.

Static station data cannot come from OCPP, so the CPO describes it here. Each connector maps
an EVSE ID (the OIOI connector-id) to an OCPP charge point id and connector id.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import available_timezones

from cpo_gateway.bridge.catalogue import (
    CONNECTOR_TYPES,
    WEEKDAYS,
    Address,
    Catalogue,
    ChargerAuth,
    Connector,
    Contact,
    OpeningHours,
    Station,
)
from cpo_gateway.bridge.ids import CPO_ID_RE, EVSE_ID_RE
from cpo_gateway.bridge.tariff import Tariff
from cpo_gateway.isocodes import SINGLE_ZONE
from cpo_gateway.stations_tariffs import read_tariff
from cpo_gateway.tomlcheck import ConfigError, Table, describe, read_toml

# ISO 3166-1 alpha-2, officially assigned codes.
COUNTRIES = frozenset(
    [
        "AD",
        "AE",
        "AF",
        "AG",
        "AI",
        "AL",
        "AM",
        "AO",
        "AQ",
        "AR",
        "AS",
        "AT",
        "AU",
        "AW",
        "AX",
        "AZ",
        "BA",
        "BB",
        "BD",
        "BE",
        "BF",
        "BG",
        "BH",
        "BI",
        "BJ",
        "BL",
        "BM",
        "BN",
        "BO",
        "BQ",
        "BR",
        "BS",
        "BT",
        "BV",
        "BW",
        "BY",
        "BZ",
        "CA",
        "CC",
        "CD",
        "CF",
        "CG",
        "CH",
        "CI",
        "CK",
        "CL",
        "CM",
        "CN",
        "CO",
        "CR",
        "CU",
        "CV",
        "CW",
        "CX",
        "CY",
        "CZ",
        "DE",
        "DJ",
        "DK",
        "DM",
        "DO",
        "DZ",
        "EC",
        "EE",
        "EG",
        "EH",
        "ER",
        "ES",
        "ET",
        "FI",
        "FJ",
        "FK",
        "FM",
        "FO",
        "FR",
        "GA",
        "GB",
        "GD",
        "GE",
        "GF",
        "GG",
        "GH",
        "GI",
        "GL",
        "GM",
        "GN",
        "GP",
        "GQ",
        "GR",
        "GS",
        "GT",
        "GU",
        "GW",
        "GY",
        "HK",
        "HM",
        "HN",
        "HR",
        "HT",
        "HU",
        "ID",
        "IE",
        "IL",
        "IM",
        "IN",
        "IO",
        "IQ",
        "IR",
        "IS",
        "IT",
        "JE",
        "JM",
        "JO",
        "JP",
        "KE",
        "KG",
        "KH",
        "KI",
        "KM",
        "KN",
        "KP",
        "KR",
        "KW",
        "KY",
        "KZ",
        "LA",
        "LB",
        "LC",
        "LI",
        "LK",
        "LR",
        "LS",
        "LT",
        "LU",
        "LV",
        "LY",
        "MA",
        "MC",
        "MD",
        "ME",
        "MF",
        "MG",
        "MH",
        "MK",
        "ML",
        "MM",
        "MN",
        "MO",
        "MP",
        "MQ",
        "MR",
        "MS",
        "MT",
        "MU",
        "MV",
        "MW",
        "MX",
        "MY",
        "MZ",
        "NA",
        "NC",
        "NE",
        "NF",
        "NG",
        "NI",
        "NL",
        "NO",
        "NP",
        "NR",
        "NU",
        "NZ",
        "OM",
        "PA",
        "PE",
        "PF",
        "PG",
        "PH",
        "PK",
        "PL",
        "PM",
        "PN",
        "PR",
        "PS",
        "PT",
        "PW",
        "PY",
        "QA",
        "RE",
        "RO",
        "RS",
        "RU",
        "RW",
        "SA",
        "SB",
        "SC",
        "SD",
        "SE",
        "SG",
        "SH",
        "SI",
        "SJ",
        "SK",
        "SL",
        "SM",
        "SN",
        "SO",
        "SR",
        "SS",
        "ST",
        "SV",
        "SX",
        "SY",
        "SZ",
        "TC",
        "TD",
        "TF",
        "TG",
        "TH",
        "TJ",
        "TK",
        "TL",
        "TM",
        "TN",
        "TO",
        "TR",
        "TT",
        "TV",
        "TW",
        "TZ",
        "UA",
        "UG",
        "UM",
        "US",
        "UY",
        "UZ",
        "VA",
        "VC",
        "VE",
        "VG",
        "VI",
        "VN",
        "VU",
        "WF",
        "WS",
        "YE",
        "YT",
        "ZA",
        "ZM",
        "ZW",
    ]
)
POWER_TYPES = ("AC_1_PHASE", "AC_3_PHASE", "DC")
_TIME_OK = frozenset(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)) | {"24:00"}


def load_stations(path: Path) -> Catalogue:
    data = read_toml(path, "stations file not found (gateway.stations_file)")
    errors: list[str] = []
    root = Table(path, data, "", errors)
    stations = [_station(t) for t in root.tables("station")]
    chargers = [_charger(t) for t in root.tables("charger")]
    tariffs = [read_tariff(t) for t in root.tables("tariff")]
    root.finish()
    _check_unique(path, stations, chargers, errors)
    _check_tariffs(path, stations, tariffs, errors)
    if errors:
        raise ConfigError(errors)
    return Catalogue(tuple(stations), tuple(chargers), tuple(tariffs))


def _station(t: Table) -> Station:
    addr_t = t.table("address", required=True) or Table(t.file, {}, t.key("address"), t.errors)
    country = addr_t.string("country", hint="ISO 3166-1 alpha-2, e.g. DE")
    if isinstance(country, str) and country and country not in COUNTRIES:
        addr_t.error("country", "an ISO 3166-1 alpha-2 code in upper case (e.g. DE)", repr(country))
    address = Address(
        street=addr_t.string("street") or "",
        street_number=addr_t.string("street_number") or "",
        city=addr_t.string("city") or "",
        zip=addr_t.string("zip") or "",
        country=country or "",
    )
    addr_t.finish()
    contact_t = t.table("contact", required=True) or Table(t.file, {}, t.key("contact"), t.errors)
    contact = Contact(
        phone=contact_t.string("phone") or "",
        fax=contact_t.string("fax", None),
        website=contact_t.string("website", None),
        email=contact_t.string("email", None),
    )
    contact_t.finish()
    cpo_id = t.string("cpo_id", hint="country and operator id, e.g. DE*8PS")
    if isinstance(cpo_id, str) and cpo_id and not CPO_ID_RE.fullmatch(cpo_id):
        t.error(
            "cpo_id", "a CPO id like DE*8PS (country, optional '*', 3 letters/digits)", repr(cpo_id)
        )
    connectors = tuple(_connector(c, cpo_id) for c in t.tables("connector"))
    if not connectors:
        t.error("connector", "at least one [[station.connector]]", "none")
    station = Station(
        id=t.string("id") or "",
        name=t.string("name") or "",
        latitude=t.number("latitude", lo=-90.0, hi=90.0) or 0.0,
        longitude=t.number("longitude", lo=-180.0, hi=180.0) or 0.0,
        address=address,
        contact=contact,
        cpo_id=cpo_id or "",
        is_open_24=bool(t.boolean("is_open_24")),
        connectors=connectors,
        description=t.string("description", None),
        open_hour_notes=tuple(_hours(h) for h in t.tables("open_hour_notes")),
        notes=t.string("notes", None),
        is_reservable=t.boolean("is_reservable", None),
        floor_level=t.integer("floor_level", None, lo=-20, hi=200),
        is_free_charge=t.boolean("is_free_charge", None),
        total_parking=t.integer("total_parking", None, lo=0, hi=100000),
        is_green_power_available=t.boolean("is_green_power_available", None),
        is_plugin_charge=t.boolean("is_plugin_charge", None),
        is_roofed=t.boolean("is_roofed", None),
        is_private=t.boolean("is_private", None),
        time_zone=_time_zone(t),
    )
    t.finish()
    return station


def _time_zone(t: Table) -> str | None:
    zone = t.string("time_zone", None, hint="IANA, e.g. Europe/Berlin")
    if isinstance(zone, str) and zone not in _zones():
        t.error("time_zone", "an IANA time zone name (e.g. Europe/Berlin)", repr(zone))
        return None
    return zone if isinstance(zone, str) else None


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def _connector(t: Table, cpo_id: object) -> Connector:
    evse_id = t.string("evse_id", hint="e.g. DE*8PS*E1234*1")
    if isinstance(evse_id, str) and evse_id:
        if not EVSE_ID_RE.fullmatch(evse_id):
            t.error(
                "evse_id",
                "an EVSE ID matching [A-Za-z]{2}*?[A-Za-z0-9]{3}*?E[A-Za-z0-9*]{1,30}",
                repr(evse_id),
            )
        elif isinstance(cpo_id, str) and not _same_operator(evse_id, cpo_id):
            t.error("evse_id", f"an EVSE ID of the station's operator {cpo_id}", repr(evse_id))
    conn = Connector(
        evse_id=evse_id or "",
        type=t.string("type", choices=CONNECTOR_TYPES) or "",
        speed_kw=t.number("speed_kw", lo=0.1, hi=2000.0) or 0.0,
        charge_point=t.string("charge_point", hint="the OCPP charge point id") or "",
        connector=t.integer("connector", lo=1, hi=99) or 0,
        evse_index=t.integer(
            "evse", None, lo=1, hi=99, hint="the EVSE id a 2.0.1 charger uses (default: connector)"
        ),
        evse_connector=t.integer(
            "evse_connector",
            None,
            lo=1,
            hi=99,
            hint="the connector id on that EVSE for a 2.0.1 charger (default: 1)",
        ),
        tariff=t.string("tariff", None, hint="the id of a [[tariff]] in this file"),
        power_type=t.string("power_type", None, choices=POWER_TYPES),
        max_voltage=t.integer("max_voltage", None, lo=1, hi=2000, hint="V, line to neutral for AC"),
        max_amperage=t.integer("max_amperage", None, lo=1, hi=2000, hint="A"),
    )
    t.finish()
    return conn


def _same_operator(evse_id: str, cpo_id: str) -> bool:
    return evse_id.replace("*", "").upper().startswith(cpo_id.replace("*", "").upper())


def _hours(t: Table) -> OpeningHours:
    times = t.value(
        "times",
        list,
        'two times ["HH:MM", "HH:MM"]',
        check=lambda v: len(v) == 2 and all(x in _TIME_OK for x in v),
    )
    days = t.value(
        "days",
        list,
        "two weekdays out of " + ", ".join(WEEKDAYS),
        check=lambda v: len(v) == 2 and all(d in WEEKDAYS for d in v),
    )
    t.finish()
    return OpeningHours(tuple(times or ("", "")), tuple(days or ("", "")))


def _charger(t: Table) -> ChargerAuth:
    cp_id = t.string("id", hint="the OCPP charge point id")
    profile = t.integer(
        "security_profile",
        0,
        lo=0,
        hi=3,
        hint="0 none, 1 Basic auth, 2 Basic auth + TLS, 3 TLS client certificate",
    )
    pw_hash = t.string("password_hash", None, hint="set with: cpo-gateway charger set-password ID")
    if isinstance(pw_hash, str) and not pw_hash.startswith("scrypt$"):
        t.error(
            "password_hash",
            "a hash made by `cpo-gateway charger hash-password`",
            describe(pw_hash[:8] + "..."),
        )
    t.finish()
    return ChargerAuth(cp_id or "", profile or 0, pw_hash)


def _check_unique(
    path: Path, stations: list[Station], chargers: list[ChargerAuth], errors: list[str]
) -> None:
    ids: dict[str, int] = {}
    evse_station: dict[str, int] = {}
    ocpp: dict[tuple[str, int], str] = {}
    by_evse: dict[tuple[str, int, int], str] = {}
    for i, st in enumerate(stations):
        if st.id in ids:
            errors.append(
                f"{path}: station[{i}].id: expected a unique station id, found {st.id!r} as in station[{ids[st.id]}]"
            )
        ids.setdefault(st.id, i)
        for j, c in enumerate(st.connectors):
            other = evse_station.setdefault(c.evse_id, i)
            if other != i:
                errors.append(
                    f"{path}: station[{i}].connector[{j}].evse_id: expected an EVSE ID not used by another station, found {c.evse_id!r} also in station[{other}]"
                )
            key = (c.charge_point, c.connector)
            if key in ocpp:
                errors.append(
                    f"{path}: station[{i}].connector[{j}]: expected one EVSE per OCPP connector, found charge point {c.charge_point!r} connector {c.connector} already mapped to {ocpp[key]!r}"
                )
            ocpp.setdefault(key, c.evse_id)
            address = (c.charge_point, *c.evse_address)
            if address in by_evse:
                errors.append(
                    f"{path}: station[{i}].connector[{j}]: expected one connector per 2.0.1 EVSE and connector, found charge point {c.charge_point!r} evse {address[1]} evse_connector {address[2]} already mapped to {by_evse[address]!r}"
                )
            by_evse.setdefault(address, c.evse_id)
    seen: set[str] = set()
    for i, ch in enumerate(chargers):
        if ch.charge_point_id in seen:
            errors.append(
                f"{path}: charger[{i}].id: expected a unique charge point id, found {ch.charge_point_id!r} twice"
            )
        seen.add(ch.charge_point_id)


def _check_tariffs(
    path: Path, stations: list[Station], tariffs: list[Tariff], errors: list[str]
) -> None:
    ids: dict[str, int] = {}
    for i, tariff in enumerate(tariffs):
        if tariff.id in ids:
            errors.append(
                f"{path}: tariff[{i}].id: expected a unique tariff id, found {tariff.id!r} as in tariff[{ids[tariff.id]}]"
            )
        ids.setdefault(tariff.id, i)
    for i, st in enumerate(stations):
        priced = False
        for j, c in enumerate(st.connectors):
            if c.tariff is None:
                continue
            priced = True
            if c.tariff not in ids:
                known = ", ".join(repr(k) for k in ids) or "none"
                errors.append(
                    f"{path}: station[{i}].connector[{j}].tariff: expected the id of a [[tariff]] (known: {known}), found {c.tariff!r}"
                )
        # Tariff restrictions are local times: a priced station needs its zone.
        if priced and st.time_zone is None and st.address.country not in SINGLE_ZONE:
            errors.append(
                f"{path}: station[{i}].time_zone: expected an IANA time zone (country {st.address.country!r} has several), found nothing"
            )
