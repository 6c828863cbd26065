"""The stations file's `[[tariff]]` tables: what a session at a connector costs.

```toml
[[tariff]]
id = "AC-STANDARD"            # referenced by a connector: tariff = "AC-STANDARD"
currency = "EUR"              # ISO 4217
[[tariff.element]]
[[tariff.element.price_component]]
type = "ENERGY"               # ENERGY (per kWh), TIME (per hour charging), FLAT, PARKING_TIME
price = 0.39                  # excluding VAT; a number or a decimal string ("0.39")
vat = 19.0                    # percent; leave out when no VAT applies
step_size = 1                 # Wh for ENERGY, seconds for TIME and PARKING_TIME
[tariff.element.restrictions] # optional: when the element applies
min_duration = 7200           # seconds (also max_duration, min_kwh, max_kwh, min_power,
                              # max_power in kW, start_time/end_time "HH:MM",
                              # start_date/end_date "YYYY-MM-DD", day_of_week = ["MONDAY"])
```

Prices are read into Decimal from their TOML text form, never through float arithmetic.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from cpo_gateway.bridge.tariff import (
    Dimension,
    PriceComponent,
    Restrictions,
    Tariff,
    TariffElement,
    Weekday,
)
from cpo_gateway.isocodes import CURRENCIES
from cpo_gateway.tomlcheck import REQUIRED, Table, describe

# An OCPI CiString(36): printable ASCII, no spaces.
TARIFF_ID_RE = re.compile(r"[!-~]{1,36}")
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
MAX_PRICE = Decimal("100000")


def read_tariff(t: Table) -> Tariff:
    tariff_id = t.string("id", hint="e.g. AC-STANDARD; connectors name it with tariff = ...")
    if isinstance(tariff_id, str) and tariff_id and not TARIFF_ID_RE.fullmatch(tariff_id):
        t.error("id", "at most 36 printable ASCII characters without spaces", repr(tariff_id))
    currency = t.string("currency", hint="ISO 4217, e.g. EUR")
    if isinstance(currency, str) and currency and currency not in CURRENCIES:
        t.error("currency", "an ISO 4217 currency code in upper case (e.g. EUR)", repr(currency))
    elements = tuple(_element(e) for e in t.tables("element"))
    if not elements:
        t.error("element", "at least one [[tariff.element]]", "none")
    tariff = Tariff(
        id=tariff_id or "",
        currency=currency or "",
        elements=elements,
        alt_text=t.string("alt_text", None),
        alt_text_language=t.string("alt_text_language", "en", hint="ISO 639-1, e.g. de"),
        min_price=_decimal(t, "min_price", None),
        max_price=_decimal(t, "max_price", None),
    )
    low, high = tariff.min_price, tariff.max_price
    if low is not None and high is not None and low > high:
        t.error("max_price", f"at least min_price ({low})", str(high))
    t.finish()
    return tariff


def _element(t: Table) -> TariffElement:
    components = tuple(_component(c) for c in t.tables("price_component"))
    if not components:
        t.error("price_component", "at least one [[tariff.element.price_component]]", "none")
    dims = [c.dimension for c in components]
    for dim in set(dims):
        if dims.count(dim) > 1:
            t.error("price_component", f"one price component per type, {dim} once", "twice")
    rt = t.table("restrictions")
    restrictions = _restrictions(rt) if rt is not None else None
    t.finish()
    return TariffElement(components, restrictions)


def _component(t: Table) -> PriceComponent:
    dim = t.string("type", choices=[d.value for d in Dimension])
    price = _decimal(t, "price")
    vat = _decimal(t, "vat", None, hi=Decimal(100))
    step = t.integer("step_size", 1, lo=1, hi=86400 * 366)
    t.finish()
    return PriceComponent(Dimension(dim) if dim else Dimension.FLAT, price or Decimal(0), step, vat)


def _restrictions(t: Table) -> Restrictions:
    times = {
        k: t.string(k, None, hint="HH:MM, local to the station") for k in ("start_time", "end_time")
    }
    for key, value in times.items():
        if isinstance(value, str) and not _HHMM.fullmatch(value):
            t.error(key, "a time HH:MM between 00:00 and 23:59", repr(value))
    dates = {k: t.string(k, None, hint="YYYY-MM-DD") for k in ("start_date", "end_date")}
    for key, value in dates.items():
        if isinstance(value, str) and not _is_date(value):
            t.error(key, "a date YYYY-MM-DD", repr(value))
    days = t.value(
        "day_of_week",
        list,
        "a list of weekdays out of " + ", ".join(Weekday),
        [],
        check=lambda v: bool(v) and all(d in set(Weekday) for d in v),
    )
    r = Restrictions(
        start_time=times["start_time"],
        end_time=times["end_time"],
        start_date=dates["start_date"],
        end_date=dates["end_date"],
        min_kwh=_decimal(t, "min_kwh", None),
        max_kwh=_decimal(t, "max_kwh", None),
        min_power=_decimal(t, "min_power", None),
        max_power=_decimal(t, "max_power", None),
        min_duration=t.integer("min_duration", None, lo=0, hint="seconds"),
        max_duration=t.integer("max_duration", None, lo=1, hint="seconds"),
        day_of_week=tuple(Weekday(d) for d in days or ()),
    )
    for lo, hi in (
        ("min_kwh", "max_kwh"),
        ("min_power", "max_power"),
        ("min_duration", "max_duration"),
    ):
        low, high = getattr(r, lo), getattr(r, hi)
        if low is not None and high is not None and low >= high:
            t.error(hi, f"more than {lo} ({low})", str(high))
    if r.start_date and r.end_date and r.start_date >= r.end_date:
        t.error("end_date", f"a date after start_date ({r.start_date})", repr(r.end_date))
    if r.empty:
        t.error("restrictions", "at least one restriction (or leave the table out)", "none")
    t.finish()
    return r


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _decimal(
    t: Table, name: str, default: object = REQUIRED, *, hi: Decimal = MAX_PRICE
) -> Decimal | None:
    """A non-negative amount written as a TOML number or a decimal string."""
    expected = f'a number between 0 and {hi} (or a decimal string like "0.39")'
    raw = t.value(name, (int, float, str), expected, default)
    if raw is None or name not in t.data:
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0 or value > hi:
        t.error(name, expected, describe(raw))
        return None
    return value
