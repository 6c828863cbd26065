"""Bodies of the OIOI calls the gateway sends to an EMP: station-post, connector-post-status,
session-post (CDR) and rfid-verify. Strict in what is sent: optional fields are omitted when
unknown, never sent as null. No I/O.
"""

from __future__ import annotations

import math

from cpo_gateway.bridge.catalogue import Station
from cpo_gateway.bridge.ids import try_normalise_uid
from cpo_gateway.bridge.model import Cdr, Interval, StatusUpdate

# Optional station fields in the spec's order: (attribute, OIOI key).
_OPTIONAL_STATION_FIELDS = (
    ("notes", "notes"),
    ("is_reservable", "is-reservable"),
    ("floor_level", "floor-level"),
    ("is_free_charge", "is-free-charge"),
    ("total_parking", "total-parking"),
    ("is_green_power_available", "is-green-power-available"),
    ("is_plugin_charge", "is-plugin-charge"),
    ("is_roofed", "is-roofed"),
    ("is_private", "is-private"),
)


def render_station_post(
    station: Station, partner_identifier: str, deleted: bool = False
) -> dict[str, object]:
    """The station-post body; "partner-identifier" sits beside "station", as in the spec."""
    body: dict[str, object] = {"id": station.id, "name": station.name}
    if station.description is not None:
        body["description"] = station.description
    address = station.address
    body.update(
        {
            "latitude": station.latitude,
            "longitude": station.longitude,
            "address": {
                "street": address.street,
                "street-number": address.street_number,
                "city": address.city,
                "zip": address.zip,
                "country": address.country,
            },
            "contact": _contact(station),
            "cpo-id": station.cpo_id,
            "is-open-24": station.is_open_24,
            "connectors": _connectors(station),
        }
    )
    if station.open_hour_notes:
        body["open-hour-notes"] = [
            {"times": list(note.times), "days": list(note.days)} for note in station.open_hour_notes
        ]
    for attribute, key in _OPTIONAL_STATION_FIELDS:
        value = getattr(station, attribute)
        if value is not None:
            body[key] = value
    body["deleted"] = deleted
    return {"station-post": {"station": body, "partner-identifier": partner_identifier}}


def _contact(station: Station) -> dict[str, object]:
    contact = station.contact
    out: dict[str, object] = {"phone": contact.phone}
    # The spec's field list says "website", its example "web": the field list wins.
    optional = (("fax", contact.fax), ("website", contact.website), ("email", contact.email))
    out.update((key, value) for key, value in optional if value is not None)
    return out


def _connectors(station: Station) -> list[dict[str, object]]:
    """One entry per EVSE ID: connectors sharing an EVSE ID are one connector to the EMP."""
    out: dict[str, dict[str, object]] = {}
    for conn in station.connectors:
        if conn.evse_id not in out:
            out[conn.evse_id] = {"id": conn.evse_id, "name": conn.type, "speed": conn.speed_kw}
    return list(out.values())


def render_status(update: StatusUpdate) -> dict[str, object]:
    return {
        "connector-post-status": {
            "connector-id": update.evse_id,
            "partner-identifier": update.partner_identifier,
            "status": update.status.value,
        }
    }


def _interval(interval: Interval) -> dict[str, object]:
    out: dict[str, object] = {"start": interval.start}
    if interval.stop is not None:
        out["stop"] = interval.stop
    return out


def render_cdr(cdr: Cdr) -> dict[str, object]:
    """The session-post body. A session still running has no session-interval stop."""
    body: dict[str, object] = {
        "user": {"identifier-type": cdr.user.kind.value, "identifier": cdr.user.identifier},
        "session-id": cdr.session_id,
        "connector-id": cdr.evse_id,
        "session-interval": _interval(cdr.session_interval),
    }
    if cdr.charging_interval is not None:
        body["charging-interval"] = _interval(cdr.charging_interval)
    # A non-finite reading is a meter fault: better no figure than a null or a wrong bill.
    if cdr.energy_kwh is not None and math.isfinite(cdr.energy_kwh):
        body["energy-consumed"] = round(cdr.energy_kwh, 3)
    body["partner-identifier"] = cdr.partner_identifier
    return {"session-post": body}


def render_rfid_verify(uid: str) -> dict[str, object]:
    """The rfid-verify body; the UID is sent normalised when it is one (idempotent)."""
    return {"rfid-verify": {"rfid": try_normalise_uid(uid) or uid}}
