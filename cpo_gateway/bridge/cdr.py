"""Charge detail records from stored transactions and sessions."""

from __future__ import annotations

from dataclasses import asdict

from cpo_gateway.bridge.clock import to_rfc3339
from cpo_gateway.bridge.model import Cdr, Interval, User, UserKind
from cpo_gateway.bridge.ports import SessionRecord, TxRecord

CDR_KIND = "session-post"


def build_cdr(tx: TxRecord, session: SessionRecord, evse_id: str, partner: str) -> Cdr:
    start = to_rfc3339(tx.started_at) or to_rfc3339(tx.first_wh_at) or to_rfc3339(tx.stopped_at)
    stop = to_rfc3339(tx.stopped_at)
    charging = None
    if tx.charge_start_at and tx.charge_stop_at:
        c_start, c_stop = to_rfc3339(tx.charge_start_at), to_rfc3339(tx.charge_stop_at)
        if c_start and c_stop:
            charging = Interval(c_start, c_stop)
    energy = None
    if tx.stopped_at is not None:
        begin = tx.meter_start_wh if tx.meter_start_wh is not None else tx.first_wh
        end = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.last_wh
        if begin is not None and end is not None:
            energy = round(max(0.0, end - begin) / 1000.0, 3)
    kind = UserKind(session.user_kind) if session.user_kind else UserKind.RFID
    identifier = session.user_id or tx.id_tag or ""
    return Cdr(
        session_id=session.id,
        evse_id=evse_id,
        user=User(kind, identifier),
        session_interval=Interval(start or "", stop),
        partner_identifier=partner,
        charging_interval=charging,
        energy_kwh=energy,
    )


def cdr_to_dict(cdr: Cdr) -> dict[str, object]:
    """The outbox payload: a plain, protocol-neutral dict (see cdr_from_dict)."""
    return asdict(cdr)


def cdr_from_dict(data: dict[str, object]) -> Cdr:
    user = data["user"]
    si = data["session_interval"]
    ci = data.get("charging_interval")
    energy = data.get("energy_kwh")
    assert isinstance(user, dict) and isinstance(si, dict)
    return Cdr(
        session_id=str(data["session_id"]),
        evse_id=str(data["evse_id"]),
        user=User(UserKind(user["kind"]), str(user["identifier"])),
        session_interval=Interval(si["start"], si.get("stop")),
        partner_identifier=str(data["partner_identifier"]),
        charging_interval=Interval(ci["start"], ci.get("stop")) if isinstance(ci, dict) else None,
        energy_kwh=float(energy) if isinstance(energy, int | float) else None,
    )
