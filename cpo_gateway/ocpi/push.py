"""What each neutral outbox row becomes when pushed to a partner's OCPI Receiver interfaces.

`render_push` maps one row (kind, key, payload) to one request: the module, the method, the
path below the partner's endpoint of that module, and the body.

- STATION: PUT {locations}/{cc}/{pid}/{location_id}, the whole Location with the EVSE
  statuses as they stand; a deleted station is PUT with every EVSE REMOVED.
- EVSE_STATUS: PATCH {locations}/{cc}/{pid}/{location_id}/{evse_uid}, `status` and
  `last_updated` only.
- SESSION: PUT {sessions}/{cc}/{pid}/{session_id} when it starts and when it ends (the whole
  Session), PATCH of `kwh`, `status`, `last_updated` while it charges.
- With `whole`, a PATCH is a PUT of the whole object instead (delivery.py falls back to it
  when a receiver refuses a PATCH of an object it does not know).
- CDR: POST {cdrs}, the whole CDR. A CDR of a session not ended (the optional one at the
  start) has no OCPI form: None, nothing to send.
- TARIFF: PUT {tariffs}/{cc}/{pid}/{tariff_id}, the tariff as the stations file in force
  has it (None when the file no longer has it: its removal row follows); a removed tariff
  is DELETE {tariffs}/{cc}/{pid}/{tariff_id}.

{cc}/{pid} are ours (the CPO's): the receiver stores our objects under our party.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.model import ConnectorState, EvseStatus
from cpo_gateway.bridge.owed import Owed, SessionPhase, SessionUpdate
from cpo_gateway.bridge.station_sync import station_from_dict
from cpo_gateway.ocpi.cdrs import Cdrs
from cpo_gateway.ocpi.locations import Locations, evse_uid, status_patch
from cpo_gateway.ocpi.ports import EvseState, KnownToken, stamp
from cpo_gateway.ocpi.sessions import NotRenderable, Sessions
from cpo_gateway.ocpi.tariffs import render_tariff
from cpo_gateway.ocpi.transport import Party


@dataclass(frozen=True, slots=True)
class Push:
    module: str  # the partner's endpoint: locations, sessions, cdrs, tariffs
    method: str
    path: str  # below the endpoint's URL ("" for the endpoint itself)
    body: dict[str, Any]  # a DELETE's is empty and not sent


@dataclass(frozen=True, slots=True)
class PushContext:
    catalogue: Catalogue
    us: Party
    emsp: Party  # the partner's own party (its tokens' issuer)
    loaded_at: datetime  # when the stations file in force was loaded
    states: Mapping[str, EvseState]  # EVSE statuses as this partner is told them
    business_name: str | None = None
    tokens: Mapping[str, KnownToken] | None = None  # the partner's tokens of the row's card


def render_push(
    ctx: PushContext,
    kind: str,
    payload: Mapping[str, Any],
    written: datetime,
    *,
    whole: bool = False,
) -> Push | None:
    """The request a row owes (see the module docstring); None when it owes OCPI nothing.
    Raises NotRenderable for a payload that cannot be told (an EVSE gone from the file).
    `whole`: a PUT of the whole object instead of a PATCH (for a receiver that never got
    the object: a PATCH's PUT may have been coalesced away while it was unreachable)."""
    base = f"/{ctx.us.country_code}/{ctx.us.party_id}"
    locations = Locations(ctx.catalogue, ctx.states, ctx.us, ctx.loaded_at, ctx.business_name)
    match kind:
        case Owed.STATION:
            station = station_from_dict(payload["station"])
            body = locations.location(station)
            if payload.get("deleted"):
                for evse in body["evses"]:
                    evse["status"] = "REMOVED"
            return Push("locations", "PUT", f"{base}/{station.id}", body)
        case Owed.EVSE_STATUS:
            evse_id = str(payload["evse_id"])
            site = ctx.catalogue.station_of(evse_id)
            if site is None:
                raise NotRenderable(f"evse_id: {evse_id!r} is in no station of the stations file")
            reported = payload.get("reported")
            state = EvseState(
                EvseStatus(payload["status"]),
                ConnectorState(reported) if reported in set(ConnectorState) else None,
            )
            if whole:
                states = {**ctx.states, evse_id: state}
                body = Locations(
                    ctx.catalogue, states, ctx.us, ctx.loaded_at, ctx.business_name
                ).location(site)
                return Push("locations", "PUT", f"{base}/{site.id}", body)
            path = f"{base}/{site.id}/{evse_uid(evse_id)}"
            return Push("locations", "PATCH", path, status_patch(state, written))
        case Owed.SESSION:
            update = SessionUpdate.from_dict(dict(payload))
            sessions = Sessions(ctx.catalogue, ctx.us, ctx.emsp, ctx.tokens)
            path = f"{base}/{update.session_id}"
            if update.phase is SessionPhase.CHARGING and not whole:
                return Push("sessions", "PATCH", path, sessions.patch(update))
            return Push("sessions", "PUT", path, sessions.session(update, payload))
        case Owed.CDR:
            if not (payload.get("session_interval") or {}).get("stop"):
                return None
            body = Cdrs(ctx.catalogue, ctx.us, ctx.emsp, ctx.tokens).cdr(payload, written)
            return Push("cdrs", "POST", "", body)
        case Owed.TARIFF:
            tariff_id = str(payload["tariff_id"])
            if payload.get("deleted"):
                return Push("tariffs", "DELETE", f"{base}/{tariff_id}", {})
            tariff = ctx.catalogue.tariff(tariff_id)
            if tariff is None:
                return None  # removed from the file since: its own removal row follows
            cc, pid = ctx.us.country_code, ctx.us.party_id
            body = render_tariff(tariff, cc, pid, stamp(ctx.loaded_at))
            return Push("tariffs", "PUT", f"{base}/{tariff_id}", body)
    return None
