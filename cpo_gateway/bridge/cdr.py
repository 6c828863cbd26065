"""Charge detail records from stored transactions and sessions, the plausibility check
every CDR passes before it leaves (energy and times become money), and the session updates
of partners that follow sessions while they run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict
from datetime import UTC, datetime

from cpo_gateway.bridge.clock import parse_timestamp, rfc3339, to_rfc3339
from cpo_gateway.bridge.model import Cdr, Interval, SignedReading, User, UserKind
from cpo_gateway.bridge.owed import Owed, SessionPhase, SessionUpdate
from cpo_gateway.bridge.ports import SessionRecord, TxRecord

CDR_KIND = Owed.CDR


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
            # Signed: a register that went backwards is for review() to catch, not to hide.
            energy = round((end - begin) / 1000.0, 3)
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
        auth_path=session.auth_path,
        charge_point=tx.charge_point,
        connector=tx.connector,
        signed=signed_readings(tx) if tx.stopped_at is not None else (),
    )


def signed_readings(tx: TxRecord) -> tuple[SignedReading, ...]:
    """The transaction's first signed reading as Start and its last as End. One reading
    alone (an OCMF blob at the stop often holds both registers) is End when it was taken
    at the stop or after, Start otherwise."""
    first, last = tx.signed_start, tx.signed_end
    if first is None or last is None:
        return ()
    if first != last:
        return (
            dataclasses.replace(first, nature="Start"),
            dataclasses.replace(last, nature="End"),
        )
    at, stop = parse_timestamp(first.at), parse_timestamp(tx.stopped_at)
    at_stop = at is not None and stop is not None and at >= stop
    return (dataclasses.replace(first, nature="End" if at_stop else "Start"),)


# Plausibility (review). A connector cannot deliver more than its rated power for the length
# of the session: the stations file's speed_kw times the session's duration, times a margin
# (a rating is nominal: a "22 kW" AC point draws up to 3 x 32 A x 240 V = 23 kW, meters and
# timestamps round), plus an absolute allowance for sessions of seconds (a register read
# before the start stamp, second-resolution timestamps). 1e12 Wh over minutes never passes.
ENERGY_MARGIN = 1.5
ENERGY_ALLOWANCE_KWH = 1.0
# A charger clock never set after boot stamps 1970 or 2000; nothing here predates 2010.
EARLIEST = datetime(2010, 1, 1, tzinfo=UTC)
# Chargers queue transactions while offline for days, not seasons; a CDR older than a quarter
# is past any billing period and more likely a clock set back.
MAX_AGE_S = 90 * 86400.0
# Our clock and the charger's disagree by seconds (NTP) or minutes (none): an hour is neither.
MAX_AHEAD_S = 3600.0


def max_energy_kwh(speed_kw: float, duration_s: float) -> float:
    """The most a connector of `speed_kw` plausibly delivers in `duration_s`."""
    return speed_kw * max(0.0, duration_s) / 3600.0 * ENERGY_MARGIN + ENERGY_ALLOWANCE_KWH


def review(cdr: Cdr, speed_kw: float | None, now: float) -> str | None:
    """Why `cdr` must not leave without a human looking at it, or None when it is plausible.

    `speed_kw` is the connector's rated power (None: unknown, the energy bound is not
    applied); `now` our clock (epoch seconds). A CDR without energy (the first one, sent at
    the start with cdr_on_start) is checked for its times only.
    """
    start = parse_timestamp(cdr.session_interval.start)
    if start is None:
        return "start time missing or unreadable"
    stop = parse_timestamp(cdr.session_interval.stop) if cdr.session_interval.stop else None
    if cdr.session_interval.stop and stop is None:
        return "stop time unreadable"
    for name, at in (("start", start), ("stop", stop)):
        if at is None:
            continue
        if at < EARLIEST:
            return f"{name} time {at.isoformat()} is before 2010 (charger clock not set?)"
        age = now - at.timestamp()
        if age > MAX_AGE_S:
            return f"{name} time {at.isoformat()} is more than 90 days old"
        if -age > MAX_AHEAD_S:
            return f"{name} time {at.isoformat()} is more than 1 h ahead of our clock"
    if stop is not None and stop < start:
        return "stop before start"
    energy = cdr.energy_kwh
    if energy is None:
        return None
    if not math.isfinite(energy):
        return "energy is not a number"
    if energy < 0:
        return f"negative energy {energy} kWh (meter stop below meter start)"
    if speed_kw is not None and stop is not None:
        duration = (stop - start).total_seconds()
        bound = max_energy_kwh(speed_kw, duration)
        if energy > bound:
            return (
                f"energy {energy} kWh above the {round(bound, 3)} kWh a {speed_kw} kW "
                f"connector can deliver in {round(duration)} s"
            )
    return None


def cdr_to_dict(cdr: Cdr) -> dict[str, object]:
    """The outbox payload: a plain, protocol-neutral dict (see cdr_from_dict); `signed` is
    left out when there are no signed readings."""
    data = asdict(cdr)
    if not cdr.signed:
        del data["signed"]
    return data


def cdr_from_dict(data: dict[str, object]) -> Cdr:
    user = data["user"]
    si = data["session_interval"]
    ci = data.get("charging_interval")
    energy = data.get("energy_kwh")
    auth, cp, connector = data.get("auth_path"), data.get("charge_point"), data.get("connector")
    assert isinstance(user, dict) and isinstance(si, dict)
    return Cdr(
        session_id=str(data["session_id"]),
        evse_id=str(data["evse_id"]),
        user=User(UserKind(user["kind"]), str(user["identifier"])),
        session_interval=Interval(si["start"], si.get("stop")),
        partner_identifier=str(data["partner_identifier"]),
        charging_interval=Interval(ci["start"], ci.get("stop")) if isinstance(ci, dict) else None,
        energy_kwh=float(energy) if isinstance(energy, int | float) else None,
        auth_path=str(auth) if auth is not None else None,
        charge_point=str(cp) if cp is not None else None,
        connector=connector if isinstance(connector, int) else None,
        signed=_signed_from_list(data.get("signed")),
    )


def _signed_from_list(items: object) -> tuple[SignedReading, ...]:
    if not isinstance(items, list | tuple):  # a list once through JSON, a tuple before
        return ()
    return tuple(SignedReading(**item) for item in items if isinstance(item, dict))


def build_session_update(
    tx: TxRecord,
    session: SessionRecord,
    evse_id: str,
    partner: str,
    phase: SessionPhase,
    now: float,
) -> SessionUpdate:
    """What a partner that follows sessions is told of one: the energy so far from the
    readings stored (the same register arithmetic as the CDR's)."""
    start = to_rfc3339(tx.started_at) or to_rfc3339(tx.first_wh_at) or rfc3339(now)
    begin = tx.meter_start_wh if tx.meter_start_wh is not None else tx.first_wh
    end = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.last_wh
    energy = None
    if begin is not None and end is not None and math.isfinite(end - begin):
        energy = round(max(0.0, end - begin) / 1000.0, 3)
    kind = session.user_kind or UserKind.RFID.value
    return SessionUpdate(
        session_id=session.id,
        evse_id=evse_id,
        partner_identifier=partner,
        user_kind=kind,
        user_id=session.user_id or tx.id_tag or "",
        phase=phase,
        start=start,
        updated_at=rfc3339(now),
        stop=to_rfc3339(tx.stopped_at) if phase is SessionPhase.ENDED else None,
        energy_kwh=energy,
        auth_path=session.auth_path,
        charge_point=tx.charge_point,
        connector=tx.connector,
    )
