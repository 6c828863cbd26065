"""OCPI Tariff objects from the stations file's tariffs, and what a session costs under one.

Pricing follows OCPI 2.2.1 mod_tariffs: the session is cut where anything a restriction
looks at changes (the start and end of charging, durations, energy thresholds, local times
of day and midnights, the zone's daylight-saving changes); in each piece, per dimension, the
first element whose restrictions hold and that prices the dimension is in force. Local
times are read at the piece's real instant. ENERGY and TIME are priced while charging,
PARKING_TIME before and after it, a FLAT once per element that is in force at some moment.
Step size: the ENERGY total is rounded up to the step of the last ENERGY component used, and
only the time-based dimension used last (TIME or PARKING_TIME) is rounded up to its last
component's step; the extra is billed at that component's price. Energy is taken to flow evenly while
charging (the gateway knows its total, not its curve). All of it is Decimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cpo_gateway.bridge.tariff import (
    WEEK,
    Dimension,
    PriceComponent,
    Restrictions,
    Tariff,
    TariffElement,
)

MAX_SESSION_S = Decimal(400 * 86400)
MONEY = Decimal("0.0001")  # OCPI numbers carry at most 4 decimals
_ZERO = Decimal(0)
_HOUR = Decimal(3600)
_KWH = Decimal(1000)
_NOISE = Decimal("0.000001")


def number(value: Decimal) -> float:
    """A Decimal as the JSON number OCPI sends (4 decimals at most)."""
    return float(value.quantize(MONEY, ROUND_HALF_UP))


def render_tariff(
    tariff: Tariff, country_code: str, party_id: str, last_updated: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "country_code": country_code,
        "party_id": party_id,
        "id": tariff.id,
        "currency": tariff.currency,
    }
    if tariff.alt_text:
        body["tariff_alt_text"] = [{"language": tariff.alt_text_language, "text": tariff.alt_text}]
    if tariff.min_price is not None:
        body["min_price"] = {"excl_vat": number(tariff.min_price)}
    if tariff.max_price is not None:
        body["max_price"] = {"excl_vat": number(tariff.max_price)}
    body["elements"] = [_element(e) for e in tariff.elements]
    body["last_updated"] = last_updated
    return body


def _element(element: TariffElement) -> dict[str, Any]:
    out: dict[str, Any] = {"price_components": [_component(c) for c in element.components]}
    if element.restrictions is not None:
        out["restrictions"] = _restrictions(element.restrictions)
    return out


def _component(c: PriceComponent) -> dict[str, Any]:
    out: dict[str, Any] = {"type": c.dimension.value, "price": number(c.price)}
    if c.vat is not None:
        out["vat"] = number(c.vat)
    out["step_size"] = c.step_size
    return out


def _restrictions(r: Restrictions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("start_time", "end_time", "start_date", "end_date", "min_duration", "max_duration"):
        value = getattr(r, key)
        if value is not None:
            out[key] = value
    for key in ("min_kwh", "max_kwh", "min_power", "max_power"):
        value = getattr(r, key)
        if value is not None:
            out[key] = number(value)
    if r.day_of_week:
        out["day_of_week"] = [d.value for d in r.day_of_week]
    return out


# --- pricing ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Usage:
    """A session as pricing sees it: when it began (aware), how long it charged, how long the
    car stood without charging, and the energy. `idle_before_s` of the parking came before
    the charging (a delayed or scheduled start), the rest after it."""

    start: datetime
    charging_s: Decimal
    parking_s: Decimal
    energy_kwh: Decimal
    idle_before_s: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Price:
    excl_vat: Decimal
    incl_vat: Decimal | None

    def render(self) -> dict[str, float]:
        out = {"excl_vat": number(self.excl_vat)}
        if self.incl_vat is not None:
            out["incl_vat"] = number(self.incl_vat)
        return out


@dataclass(frozen=True, slots=True)
class Costs:
    total: Price
    energy: Price | None = None
    time: Price | None = None
    parking: Price | None = None
    fixed: Price | None = None


@dataclass(slots=True)
class _Line:
    """Quantities billed under one component (kWh for ENERGY, hours for times, 1 for FLAT)."""

    component: PriceComponent
    quantity: Decimal


def price_session(tariff: Tariff, usage: Usage, zone: ZoneInfo) -> Costs:
    charging = max(usage.charging_s, _ZERO)
    parking = max(usage.parking_s, _ZERO)
    total_s = charging + parking
    charge_from = min(max(usage.idle_before_s, _ZERO), parking)  # seconds from the start
    charge_to = charge_from + charging
    if total_s > MAX_SESSION_S:
        # The CDR review holds such a session anyway; never walk years of midnights.
        raise ValueError(f"session of {total_s} s is longer than {MAX_SESSION_S} s")
    energy = max(usage.energy_kwh, _ZERO)
    rate = energy / charging if charging > 0 else _ZERO  # kWh per second while charging
    power = rate * _HOUR if charging > 0 else None  # kW, the average
    start = usage.start.astimezone(UTC)
    cuts = sorted(
        {_ZERO, total_s, *_cuts(tariff, start, zone, charge_from, charge_to, total_s, rate)}
    )
    lines: dict[Dimension, list[_Line]] = {d: [] for d in Dimension}
    flats: set[int] = set()
    last_time: Dimension | None = None
    pieces = list(zip(cuts, cuts[1:], strict=False)) or [(_ZERO, _ZERO)]
    for a, b in pieces:
        mid = (a + b) / 2
        # The moment in real time, then read on the station's wall clock: adding seconds to
        # a local time would follow the wall clock across a daylight-saving change.
        at = (start + timedelta(seconds=float(mid))).astimezone(zone)
        is_charging = charge_from <= mid < charge_to
        done_kwh = rate * min(max(mid - charge_from, _ZERO), charging)
        kw = power if is_charging else _ZERO
        for dim in Dimension:
            if dim is Dimension.PARKING_TIME and is_charging:
                continue
            if dim in (Dimension.ENERGY, Dimension.TIME) and not is_charging:
                continue
            found = _in_force(tariff, dim, at, mid, done_kwh, kw)
            if found is None:
                continue
            index, comp = found
            if dim is Dimension.FLAT:
                if index not in flats:
                    flats.add(index)
                    lines[dim].append(_Line(comp, Decimal(1)))
                continue
            quantity = rate * (b - a) if dim is Dimension.ENERGY else (b - a) / _HOUR
            _add(lines[dim], comp, quantity)
            if dim is not Dimension.ENERGY:
                last_time = dim
    _step(lines[Dimension.ENERGY], _KWH)
    if last_time is not None:
        _step(lines[last_time], _HOUR)
    parts = {d: _sum(lines[d]) for d in Dimension}
    excl = sum((p.excl_vat for p in parts.values() if p is not None), _ZERO)
    incl = sum((p.incl_vat or _ZERO for p in parts.values() if p is not None), _ZERO)
    total = Price(excl, incl)
    if tariff.min_price is not None and excl < tariff.min_price:
        total = Price(tariff.min_price, None)
    elif tariff.max_price is not None and excl > tariff.max_price:
        total = Price(tariff.max_price, None)
    return Costs(
        total=total,
        energy=parts[Dimension.ENERGY],
        time=parts[Dimension.TIME],
        parking=parts[Dimension.PARKING_TIME],
        fixed=parts[Dimension.FLAT],
    )


def _add(lines: list[_Line], comp: PriceComponent, quantity: Decimal) -> None:
    if lines and lines[-1].component is comp:
        lines[-1].quantity += quantity
    else:
        lines.append(_Line(comp, quantity))


def _step(lines: list[_Line], unit: Decimal) -> None:
    """Round the dimension's total up to the last component's step (in Wh or seconds)."""
    if not lines:
        return
    # Cut points divide by the energy rate: round off the last digits' noise before the
    # ceiling, or 64100.000...01 Wh would bill a whole further step.
    measured = (sum((line.quantity for line in lines), _ZERO) * unit).quantize(_NOISE)
    step = Decimal(lines[-1].component.step_size)
    billed = (measured / step).to_integral_value(ROUND_CEILING) * step
    lines[-1].quantity += (billed - measured) / unit


def _sum(lines: list[_Line]) -> Price | None:
    if not lines:
        return None
    excl = sum((line.quantity * line.component.price for line in lines), _ZERO)
    incl = sum(
        (
            line.quantity * line.component.price * (1 + (line.component.vat or _ZERO) / 100)
            for line in lines
        ),
        _ZERO,
    )
    return Price(excl.quantize(MONEY, ROUND_HALF_UP), incl.quantize(MONEY, ROUND_HALF_UP))


def _in_force(
    tariff: Tariff, dim: Dimension, at: datetime, elapsed: Decimal, kwh: Decimal, kw: Decimal | None
) -> tuple[int, PriceComponent] | None:
    for index, element in enumerate(tariff.elements):
        comp = next((c for c in element.components if c.dimension is dim), None)
        if comp is None:
            continue
        if element.restrictions is None or _holds(element.restrictions, at, elapsed, kwh, kw):
            return index, comp
    return None


def _holds(
    r: Restrictions, at: datetime, elapsed: Decimal, kwh: Decimal, kw: Decimal | None
) -> bool:
    hhmm = at.strftime("%H:%M")
    if r.start_time is not None or r.end_time is not None:
        begin, end = r.start_time or "00:00", r.end_time or "24:00"
        inside = begin <= hhmm < end if begin <= end else (hhmm >= begin or hhmm < end)
        if not inside:
            return False
    day = at.date().isoformat()
    if (r.start_date and day < r.start_date) or (r.end_date and day >= r.end_date):
        return False
    if r.day_of_week and WEEK[at.weekday()] not in r.day_of_week:
        return False
    if (r.min_kwh is not None and kwh < r.min_kwh) or (r.max_kwh is not None and kwh >= r.max_kwh):
        return False
    if (r.min_duration is not None and elapsed < r.min_duration) or (
        r.max_duration is not None and elapsed >= r.max_duration
    ):
        return False
    if r.min_power is not None or r.max_power is not None:
        if kw is None:
            return False
        if (r.min_power is not None and kw < r.min_power) or (
            r.max_power is not None and kw >= r.max_power
        ):
            return False
    return True


def _cuts(
    tariff: Tariff,
    start: datetime,
    zone: ZoneInfo,
    charge_from: Decimal,
    charge_to: Decimal,
    total: Decimal,
    rate: Decimal,
) -> set[Decimal]:
    """Offsets (seconds from `start`, UTC) where an element may come into or out of force."""
    cuts = {charge_from, charge_to}
    clock: set[str] = set()
    for element in tariff.elements:
        r = element.restrictions
        if r is None:
            continue
        cuts.update(Decimal(d) for d in (r.min_duration, r.max_duration) if d is not None)
        if rate > 0:
            cuts.update(charge_from + k / rate for k in (r.min_kwh, r.max_kwh) if k is not None)
        clock.update(t for t in (r.start_time, r.end_time) if t is not None)
        if r.day_of_week or r.start_date or r.end_date:
            clock.add("00:00")
    if clock:
        cuts.update(_clock_cuts(clock, start, zone, total))
    return {c for c in cuts if _ZERO < c < total}


def _clock_cuts(clock: set[str], start: datetime, zone: ZoneInfo, total: Decimal) -> set[Decimal]:
    """Where the station's wall clock shows one of `clock`'s times, or jumps.

    A time the clocks pass twice (they go back) is a cut each time; a time they skip (they go
    forward) is reached at the jump itself, so every change of the zone's offset is a cut."""
    end = start + timedelta(seconds=float(total))
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    cuts: set[Decimal] = set()
    while day <= last:
        for hhmm in clock:
            h, m = int(hhmm[:2]), int(hhmm[3:])
            for fold in (0, 1):
                moment = datetime(day.year, day.month, day.day, h, m, tzinfo=zone, fold=fold)
                cuts.add(_seconds(moment - start))
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
        following = midnight + timedelta(days=1, hours=3)  # past any change on `day`
        if midnight.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            cuts.add(_seconds(_offset_change(midnight, following, zone) - start))
        day += timedelta(days=1)
    return cuts


def _offset_change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first second (UTC) after `before` with `after`'s offset in `zone`."""
    target = after.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        mid = before + (after - before) / 2
        if mid.astimezone(zone).utcoffset() == target:
            after = mid
        else:
            before = mid
    return after.replace(microsecond=0)


def _seconds(delta: timedelta) -> Decimal:
    return Decimal(str(delta.total_seconds()))
