"""Session pricing against a walk of the session minute by minute in real time.

price_session cuts a session where a restriction may change and prices each piece; the walk
here looks at every minute on its own: the instant is UTC plus the elapsed minutes, the local
time is that instant in the station's zone. Where all cuts fall on whole minutes (times of
day, dates, durations in minutes, energy bounds reached on whole minutes, zones whose offsets
change on whole minutes), both must agree, across daylight-saving changes too: a charging hour is sixty real minutes, whatever
the wall clock does meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.bridge.tariff import (
    WEEK,
    Dimension,
    PriceComponent,
    Restrictions,
    Tariff,
    TariffElement,
)
from cpo_gateway.ocpi.tariffs import MONEY, Price, Usage, price_session
from tests.conftest import examples

BERLIN = ZoneInfo("Europe/Berlin")
_ZERO = Decimal(0)
_MINUTE_H = Decimal(60) / Decimal(3600)
# The last unit of a rounded amount: the walk and the cuts add the same energy in different
# pieces, so a sum that falls on a half unit may round either way.
_ONE_UNIT = MONEY

ZONES = [
    BERLIN,
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),  # its clocks move by 30 minutes
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("UTC"),
]
# Nights with a daylight-saving change in one of the zones above (UTC), and an ordinary day.
CHANGES = [
    datetime(2026, 3, 29, 0, 0, tzinfo=UTC),  # Europe: 02:00 -> 03:00 at 01:00 UTC
    datetime(2026, 10, 25, 0, 0, tzinfo=UTC),  # Europe: 03:00 -> 02:00 at 01:00 UTC
    datetime(2026, 3, 8, 6, 0, tzinfo=UTC),  # New York: 02:00 -> 03:00 at 07:00 UTC
    datetime(2026, 11, 1, 5, 0, tzinfo=UTC),  # New York: 02:00 -> 01:00 at 06:00 UTC
    datetime(2026, 4, 4, 14, 0, tzinfo=UTC),  # Lord Howe: 02:00 -> 01:30 at 15:00 UTC
    datetime(2026, 10, 3, 15, 0, tzinfo=UTC),  # Lord Howe: 02:00 -> 02:30 at 15:30 UTC
    datetime(2026, 6, 10, 0, 0, tzinfo=UTC),
]
_times = st.sampled_from(
    [None, "00:00", "01:30", "02:00", "02:30", "03:00", "04:00", "06:30", "12:00", "22:00"]
)
_dates = st.sampled_from([None, "2026-03-29", "2026-03-30", "2026-10-25", "2026-10-26"])
_minutes = st.integers(0, 600).map(lambda m: m * 60)


def _restrictions(kwh: st.SearchStrategy[Decimal | None]) -> st.SearchStrategy[Restrictions]:
    return st.builds(
        Restrictions,
        start_time=_times,
        end_time=_times,
        start_date=_dates,
        end_date=_dates,
        min_kwh=kwh,
        max_kwh=kwh,
        min_power=st.one_of(st.none(), st.decimals(min_value=0, max_value=50, places=1)),
        max_power=st.one_of(st.none(), st.decimals(min_value=0, max_value=50, places=1)),
        min_duration=st.one_of(st.none(), _minutes),
        max_duration=st.one_of(st.none(), _minutes),
        day_of_week=st.lists(st.sampled_from(WEEK), max_size=3, unique=True).map(tuple),
    )


_component = st.builds(
    PriceComponent,
    st.sampled_from(list(Dimension)),
    st.decimals(min_value=0, max_value=100, places=2),
    st.just(1),  # 1 Wh or 1 s: only a part of the energy, not of whole minutes, is rounded
    st.one_of(st.none(), st.decimals(min_value=0, max_value=30, places=1)),
)


def _tariffs(kwh: st.SearchStrategy[Decimal | None]) -> st.SearchStrategy[Tariff]:
    element = st.builds(
        TariffElement,
        st.lists(_component, min_size=1, max_size=4, unique_by=lambda c: c.dimension).map(tuple),
        st.one_of(st.none(), _restrictions(kwh)),
    )
    return st.lists(element, min_size=1, max_size=5).map(lambda e: Tariff("W", "EUR", tuple(e)))


_start = st.one_of(
    st.tuples(st.sampled_from(CHANGES), st.integers(-600, 600)).map(
        lambda p: p[0] + timedelta(minutes=p[1])
    ),
    st.integers(0, 3 * 365 * 1440).map(
        lambda m: datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=m)
    ),
)


@dataclass
class _Walk:
    """What the walk billed: per dimension, the amount of each (element, component)."""

    amounts: dict[Dimension, dict[int, tuple[PriceComponent, Decimal]]] = field(
        default_factory=lambda: {d: {} for d in Dimension}
    )

    last_energy: int | None = None

    def add(self, dim: Dimension, index: int, comp: PriceComponent, quantity: Decimal) -> None:
        _, before = self.amounts[dim].get(index, (comp, _ZERO))
        self.amounts[dim][index] = (comp, before + quantity)
        if dim is Dimension.ENERGY:
            self.last_energy = index

    def round_energy_up(self) -> None:
        """The billed energy, rounded up to whole Wh (every step here is 1) at the price of
        the last energy component used (mod_tariffs step_size)."""
        if self.last_energy is None:
            return
        wh = sum((q for _, q in self.amounts[Dimension.ENERGY].values()), _ZERO) * 1000
        wh = wh.quantize(Decimal("0.000001"))  # the noise of dividing by the rate
        comp, quantity = self.amounts[Dimension.ENERGY][self.last_energy]
        extra = wh.to_integral_value(ROUND_CEILING) - wh
        self.amounts[Dimension.ENERGY][self.last_energy] = (comp, quantity + extra / 1000)

    def price(self, dim: Dimension) -> Price | None:
        lines = self.amounts[dim].values()
        if not lines:
            return None
        excl = sum((q * c.price for c, q in lines), _ZERO)
        incl = sum((q * c.price * (1 + (c.vat or _ZERO) / 100) for c, q in lines), _ZERO)
        return Price(excl.quantize(MONEY, ROUND_HALF_UP), incl.quantize(MONEY, ROUND_HALF_UP))


def _applies(
    r: Restrictions | None, local: datetime, elapsed_s: int, kwh: Decimal, kw: Decimal
) -> bool:
    if r is None:
        return True
    hhmm = local.strftime("%H:%M")
    begin, end = r.start_time or "00:00", r.end_time or "24:00"
    if begin <= end and not begin <= hhmm < end:
        return False
    if begin > end and end <= hhmm < begin:  # spans midnight
        return False
    day = local.date().isoformat()
    if r.start_date is not None and day < r.start_date:
        return False
    if r.end_date is not None and day >= r.end_date:
        return False
    if r.day_of_week and WEEK[local.weekday()] not in r.day_of_week:
        return False
    if r.min_kwh is not None and kwh < r.min_kwh:
        return False
    if r.max_kwh is not None and kwh >= r.max_kwh:
        return False
    if r.min_duration is not None and elapsed_s < r.min_duration:
        return False
    if r.max_duration is not None and elapsed_s >= r.max_duration:
        return False
    if r.min_power is not None and kw < r.min_power:
        return False
    return not (r.max_power is not None and kw >= r.max_power)


def walk(tariff: Tariff, usage: Usage, zone: ZoneInfo) -> _Walk:
    """Bill `usage` minute by minute: each minute under what is in force at its middle."""
    charging_min, parking_min = int(usage.charging_s) // 60, int(usage.parking_s) // 60
    idle_min = min(int(usage.idle_before_s) // 60, parking_min)
    rate = usage.energy_kwh / usage.charging_s if usage.charging_s else _ZERO  # kWh per s
    billed = _Walk()
    flats: set[int] = set()
    # An empty session is looked at once, at its start: it owes what is flat, nothing else.
    moments = [(m * 60 + 30, Decimal(1)) for m in range(charging_min + parking_min)] or [(0, _ZERO)]
    for elapsed_s, share in moments:
        minute = elapsed_s // 60
        local = (usage.start + timedelta(seconds=elapsed_s)).astimezone(zone)
        charging = idle_min <= minute < idle_min + charging_min
        kw = rate * 3600 if charging else _ZERO
        charged_s = min(max(elapsed_s - idle_min * 60, 0), charging_min * 60)
        kwh = rate * charged_s
        for dim in Dimension:
            if dim is Dimension.PARKING_TIME and charging:
                continue
            if dim in (Dimension.ENERGY, Dimension.TIME) and not charging:
                continue
            found = next(
                (
                    (i, c)
                    for i, e in enumerate(tariff.elements)
                    for c in e.components
                    if c.dimension is dim and _applies(e.restrictions, local, elapsed_s, kwh, kw)
                ),
                None,
            )
            if found is None:
                continue
            index, comp = found
            if dim is Dimension.FLAT:
                if index not in flats:
                    flats.add(index)
                    billed.add(dim, index, comp, Decimal(1))
            elif dim is Dimension.ENERGY:
                billed.add(dim, index, comp, rate * 60 * share)
            else:
                billed.add(dim, index, comp, _MINUTE_H * share)
    billed.round_energy_up()
    return billed


def _close(ours: Price | None, walked: Price | None) -> bool:
    if ours is None or walked is None:
        return ours is walked
    assert ours.incl_vat is not None and walked.incl_vat is not None
    return (
        abs(ours.excl_vat - walked.excl_vat) <= _ONE_UNIT
        and abs(ours.incl_vat - walked.incl_vat) <= _ONE_UNIT
    )


@st.composite
def _sessions(draw: st.DrawFn) -> tuple[Tariff, Usage, ZoneInfo]:
    charging_min = draw(st.integers(0, 10 * 60))
    parking_min = draw(st.integers(0, 5 * 60))
    idle_min = draw(st.one_of(st.just(0), st.integers(0, parking_min)))
    if draw(st.booleans()):
        # A whole number of Wh a minute, and kWh bounds the session reaches on whole minutes
        # while it charges (not at its very end, where the last digit of a division decides).
        per_minute = draw(st.integers(0, 500))
        wh = per_minute * charging_min
        reached = st.integers(0, max(charging_min - 1, 0)).map(
            lambda m: Decimal(per_minute * m) / 1000
        )
        kwh: st.SearchStrategy[Decimal | None] = st.one_of(st.none(), reached)
    else:
        wh = draw(st.integers(0, 150_000))
        kwh = st.none()
    usage = Usage(
        draw(_start),
        Decimal(charging_min * 60),
        Decimal(parking_min * 60),
        Decimal(wh) / 1000,
        Decimal(idle_min * 60),
    )
    return draw(_tariffs(kwh)), usage, draw(st.sampled_from(ZONES))


@settings(max_examples=examples(300), deadline=None)
@given(_sessions())
def test_pricing_bills_each_real_minute_under_what_is_in_force_then(
    session: tuple[Tariff, Usage, ZoneInfo],
) -> None:
    tariff, usage, zone = session
    costs = price_session(tariff, usage, zone)
    walked = walk(tariff, usage, zone)
    for dim, ours in (
        (Dimension.ENERGY, costs.energy),
        (Dimension.TIME, costs.time),
        (Dimension.PARKING_TIME, costs.parking),
        (Dimension.FLAT, costs.fixed),
    ):
        assert _close(ours, walked.price(dim)), (dim, ours, walked.price(dim))


def _night_hour() -> Tariff:
    night = TariffElement(
        (PriceComponent(Dimension.TIME, Decimal("1.00"), 1),),
        Restrictions(start_time="04:00", end_time="06:00"),
    )
    free = TariffElement((PriceComponent(Dimension.TIME, Decimal("0.00"), 1),), None)
    return Tariff("N", "EUR", (night, free))


def test_the_night_the_clocks_go_forward_a_three_hour_session_has_its_hour_after_four() -> None:
    # 29 March 2026, Berlin: 00:00 UTC is 01:00 CET; at 01:00 UTC the clocks jump from 02:00
    # to 03:00 CEST. Three real hours of charging end at 03:00 UTC, 05:00 CEST: the last of
    # them, 04:00 to 05:00 on the wall, is under the 1.00/h element.
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    costs = price_session(_night_hour(), Usage(start, Decimal(3 * 3600), _ZERO, _ZERO), BERLIN)
    assert costs.time is not None
    assert costs.time.excl_vat == Decimal("1.00")
    # Three charging hours are three hours, whatever the clock did.
    assert walk(_night_hour(), Usage(start, Decimal(3 * 3600), _ZERO, _ZERO), BERLIN).price(
        Dimension.TIME
    ) == Price(Decimal("1.0000"), Decimal("1.0000"))


def test_the_night_the_clocks_go_back_the_repeated_hour_is_billed_twice() -> None:
    # 25 October 2026, Berlin: 02:00 to 03:00 is lived twice, in CEST and then in CET (the
    # clocks go back at 01:00 UTC). Three hours from 00:00 UTC (02:00 CEST) are 02:00-03:00
    # CEST, 02:00-03:00 CET and 03:00-04:00 CET: two of them under the 02:00-03:00 element.
    repeated = TariffElement(
        (PriceComponent(Dimension.TIME, Decimal("1.00"), 1),),
        Restrictions(start_time="02:00", end_time="03:00"),
    )
    free = TariffElement((PriceComponent(Dimension.TIME, Decimal("0.00"), 1),), None)
    tariff = Tariff("R", "EUR", (repeated, free))
    start = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00 CEST
    costs = price_session(tariff, Usage(start, Decimal(3 * 3600), _ZERO, _ZERO), BERLIN)
    assert costs.time is not None and costs.time.excl_vat == Decimal("2.00")


def test_a_car_that_waits_before_charging_parks_first_and_charges_at_the_later_hours() -> None:
    # Plugged in at 21:00 in Berlin (20:00 UTC in March), charging from 22:00 to 23:00 under
    # a scheduled start, then unplugged: an hour of parking first, then an hour of charging
    # at the night price (0.30/kWh from 22:00; 0.60 by day), 10 kWh.
    day = TariffElement(
        (PriceComponent(Dimension.ENERGY, Decimal("0.60"), 1),),
        Restrictions(start_time="07:00", end_time="22:00"),
    )
    night = TariffElement(
        (
            PriceComponent(Dimension.ENERGY, Decimal("0.30"), 1),
            PriceComponent(Dimension.PARKING_TIME, Decimal("2.00"), 1),
        ),
        None,
    )
    tariff = Tariff("S", "EUR", (day, night))
    start = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
    usage = Usage(start, Decimal(3600), Decimal(3600), Decimal(10), idle_before_s=Decimal(3600))
    costs = price_session(tariff, usage, BERLIN)
    assert costs.energy is not None and costs.energy.excl_vat == Decimal("3.00")
    assert costs.parking is not None and costs.parking.excl_vat == Decimal("2.00")
    # Charging from the plug-in instead would have been at the day price.
    early = price_session(tariff, Usage(start, Decimal(3600), Decimal(3600), Decimal(10)), BERLIN)
    assert early.energy is not None and early.energy.excl_vat == Decimal("6.00")


def test_kwh_tiers_count_the_energy_from_when_charging_began() -> None:
    # The first 5 kWh at 0.50, the rest at 0.20. The car waits an hour, then charges 10 kWh in
    # an hour: 5 kWh are reached half an hour into the charging, not half an hour after the
    # plug-in (when nothing had flowed yet).
    first = TariffElement(
        (PriceComponent(Dimension.ENERGY, Decimal("0.50"), 1),), Restrictions(max_kwh=Decimal(5))
    )
    rest = TariffElement((PriceComponent(Dimension.ENERGY, Decimal("0.20"), 1),), None)
    tariff = Tariff("K", "EUR", (first, rest))
    start = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
    usage = Usage(start, Decimal(3600), Decimal(3600), Decimal(10), idle_before_s=Decimal(3600))
    costs = price_session(tariff, usage, BERLIN)
    assert costs.energy is not None and costs.energy.excl_vat == Decimal("3.50")
