"""Tariffs as the stations file describes them: what a session at a connector costs.

Pure data, read by the roaming adapters (who render it and price sessions with it). Prices
are Decimal, never float: they become money. A tariff is a list of elements; each has price
components (one per dimension) and optional restrictions saying when the element applies.
For a dimension, the first element whose restrictions hold and that prices that dimension is
the one in force at a moment of the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Dimension(StrEnum):
    """What a price component charges for, and the unit of its step size."""

    ENERGY = "ENERGY"  # per kWh; step size in Wh
    TIME = "TIME"  # per hour charging; step size in seconds
    FLAT = "FLAT"  # once; step size 1
    PARKING_TIME = "PARKING_TIME"  # per hour not charging; step size in seconds


class Weekday(StrEnum):
    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"


WEEK = tuple(Weekday)  # index = datetime.weekday()


@dataclass(frozen=True, slots=True)
class PriceComponent:
    dimension: Dimension
    price: Decimal  # excluding VAT, per unit of the dimension
    step_size: int  # Wh for ENERGY, seconds for TIME and PARKING_TIME, 1 for FLAT
    vat: Decimal | None = None  # percent; None: no VAT applies (not the same as 0 %)


@dataclass(frozen=True, slots=True)
class Restrictions:
    """When an element applies. Times and dates are local to the station (its time zone);
    a lower bound is inclusive, an upper bound exclusive. `end_time` before `start_time`
    spans midnight."""

    start_time: str | None = None  # "HH:MM"
    end_time: str | None = None
    start_date: str | None = None  # "YYYY-MM-DD"
    end_date: str | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_power: Decimal | None = None  # kW, the session's average while charging
    max_power: Decimal | None = None
    min_duration: int | None = None  # seconds since the session began
    max_duration: int | None = None
    day_of_week: tuple[Weekday, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Restrictions()


@dataclass(frozen=True, slots=True)
class TariffElement:
    components: tuple[PriceComponent, ...]
    restrictions: Restrictions | None = None


@dataclass(frozen=True, slots=True)
class Tariff:
    id: str
    currency: str  # ISO 4217
    elements: tuple[TariffElement, ...]
    alt_text: str | None = None  # a line for the driver, in the station's language
    alt_text_language: str = "en"
    min_price: Decimal | None = None  # excluding VAT: the session costs at least this
    max_price: Decimal | None = None  # and at most this
