"""OCPI tariffs: the [[tariff]] table, rendered Tariff objects, and session pricing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.bridge.tariff import (
    Dimension,
    PriceComponent,
    Restrictions,
    Tariff,
    TariffElement,
)
from cpo_gateway.ocpi.tariffs import Price, Usage, price_session, render_tariff
from cpo_gateway.tomlcheck import ConfigError
from tests.conftest import examples
from tests.ocpi_fixtures import STATIONS, catalogue
from tests.ocpi_models import validate

BERLIN = ZoneInfo("Europe/Berlin")
UPDATED = "2026-03-01T10:00:00Z"
_ZERO = Decimal(0)


def _usage(start: datetime, charging_min: float, parking_min: float, kwh: str) -> Usage:
    return Usage(start, Decimal(charging_min * 60), Decimal(parking_min * 60), Decimal(kwh))


def test_the_specs_flat_time_parking_example_costs_9_00_and_10_30(tmp_path: Path) -> None:
    # mod_tariffs: 2.50 start (15 % VAT), 1.00/h charging (20 %), 5.00/h parking in steps of
    # 5 minutes (10 %); 165 minutes charging and 42 parking: the parking is billed as 45.
    tariff = catalogue(tmp_path).tariff("AC")
    assert tariff is not None
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    costs = price_session(tariff, _usage(start, 165, 42, "30"), BERLIN)
    assert costs.total.excl_vat == Decimal("9.00")
    assert costs.total.incl_vat == Decimal("10.30")
    assert costs.parking is not None and costs.parking.excl_vat == Decimal("3.75")
    # Charging time is followed by parking: its 900 s step does not apply.
    assert costs.time is not None and costs.time.excl_vat == Decimal("2.75")
    assert costs.fixed is not None and costs.fixed.incl_vat == Decimal("2.875")


def test_energy_is_rounded_up_to_the_step_and_priced_by_local_time_of_day(tmp_path: Path) -> None:
    tariff = catalogue(tmp_path).tariff("DC")
    assert tariff is not None
    # 21:30 to 22:30 in Berlin (UTC+1 in March before the switch): half the energy at the
    # day price, half at the night price; 40.2 kWh billed as 41 (1 kWh steps), the extra
    # 0.8 kWh at the night price (the last ENERGY component used).
    start = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)
    costs = price_session(tariff, _usage(start, 60, 0, "40.2"), BERLIN)
    expected = Decimal("20.1") * Decimal("0.59") + Decimal("20.9") * Decimal("0.39")
    assert costs.energy is not None
    assert costs.energy.excl_vat == expected.quantize(Decimal("0.0001"))
    assert costs.total.incl_vat == (expected * Decimal("1.19")).quantize(Decimal("0.0001"))
    # The same session by day is all at the day price.
    day = price_session(tariff, _usage(start - timedelta(hours=8), 60, 0, "40.2"), BERLIN)
    assert day.total.excl_vat == Decimal(41) * Decimal("0.59")


def test_duration_tiers_change_the_time_price_after_two_hours() -> None:
    tariff = Tariff(
        "TIERS",
        "EUR",
        (
            TariffElement(
                (PriceComponent(Dimension.TIME, Decimal("1.00"), 60),),
                Restrictions(max_duration=7200),
            ),
            TariffElement((PriceComponent(Dimension.TIME, Decimal("3.00"), 60),)),
        ),
    )
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    costs = price_session(tariff, _usage(start, 180, 0, "10"), BERLIN)
    assert costs.total.excl_vat == Decimal("5.00")  # 2 h at 1.00 and 1 h at 3.00
    assert costs.total.incl_vat == Decimal("5.00")  # no VAT given: none applies


def test_min_price_and_max_price_bound_the_total() -> None:
    energy = TariffElement((PriceComponent(Dimension.ENERGY, Decimal("0.50"), 1),))
    tariff = Tariff("B", "EUR", (energy,), min_price=Decimal("2"), max_price=Decimal("10"))
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert price_session(tariff, _usage(start, 10, 0, "1"), BERLIN).total.excl_vat == 2
    assert price_session(tariff, _usage(start, 60, 0, "30"), BERLIN).total.excl_vat == 10
    assert price_session(tariff, _usage(start, 60, 0, "8"), BERLIN).total.excl_vat == 4


def test_rendered_tariffs_are_valid_ocpi_2_2_1(tmp_path: Path) -> None:
    cat = catalogue(tmp_path)
    bodies = [render_tariff(t, "DE", "CPO", UPDATED) for t in cat.tariffs]
    for body in bodies:
        validate("Tariff", body)
    dc = bodies[1]
    assert dc["elements"][0]["restrictions"] == {"start_time": "07:00", "end_time": "22:00"}
    assert dc["elements"][0]["price_components"] == [
        {"type": "ENERGY", "price": 0.59, "vat": 19.0, "step_size": 1000}
    ]
    assert bodies[0]["tariff_alt_text"][0]["text"].startswith("2.50 EUR")


def _broken(tmp_path: Path, old: str, new: str) -> list[str]:
    assert old in STATIONS
    with pytest.raises(ConfigError) as info:
        catalogue(tmp_path, STATIONS.replace(old, new, 1))
    return info.value.problems


def test_check_config_names_an_unknown_tariff_a_negative_price_and_a_bad_currency(
    tmp_path: Path,
) -> None:
    problems = _broken(tmp_path, 'tariff = "AC"', 'tariff = "NOPE"')
    assert any("station[0].connector[0].tariff" in p and "'NOPE'" in p for p in problems)
    problems = _broken(tmp_path, "price = 2.50", "price = -2.50")
    assert any("tariff[0].element[0].price_component[0].price" in p for p in problems)
    problems = _broken(tmp_path, 'currency = "EUR"', 'currency = "EURO"')
    assert any("tariff[0].currency" in p and "ISO 4217" in p for p in problems)
    problems = _broken(tmp_path, 'type = "FLAT"', 'type = "FLATRATE"')
    assert any("tariff[0].element[0].price_component[0].type" in p for p in problems)
    problems = _broken(tmp_path, 'start_time = "07:00"', 'start_time = "7 am"')
    assert any("tariff[1].element[0].restrictions.start_time" in p for p in problems)
    problems = _broken(tmp_path, 'id = "DC"', 'id = "AC"')
    assert any("tariff[1].id" in p and "unique" in p for p in problems)


# --- properties -------------------------------------------------------------------------------
_price = st.decimals(min_value=0, max_value=100, places=2)
_component = st.builds(
    PriceComponent,
    st.sampled_from(list(Dimension)),
    _price,
    st.integers(1, 3600),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=30, places=1)),
)
_times = st.sampled_from([None, "00:00", "06:30", "12:00", "18:00", "22:00", "23:59"])
_restrictions = st.builds(
    Restrictions,
    start_time=_times,
    end_time=_times,
    min_duration=st.one_of(st.none(), st.integers(0, 7200)),
    max_duration=st.one_of(st.none(), st.integers(7201, 20000)),
)


def _elements(step: st.SearchStrategy[int]) -> st.SearchStrategy[TariffElement]:
    component = st.builds(
        PriceComponent,
        st.sampled_from(list(Dimension)),
        _price,
        step,
        st.one_of(st.none(), st.decimals(min_value=0, max_value=30, places=1)),
    )
    return st.builds(
        TariffElement,
        st.lists(component, min_size=1, max_size=4, unique_by=lambda c: c.dimension).map(tuple),
        st.one_of(st.none(), _restrictions),
    )


def _energy_tiers(step: st.SearchStrategy[int]) -> st.SearchStrategy[tuple[TariffElement, ...]]:
    # kWh bounds only on elements that price nothing but energy: more energy may reach a kWh
    # threshold sooner, which may end a dearer TIME element early (OCPI allows that tariff).
    tier = st.builds(
        TariffElement,
        st.builds(PriceComponent, st.just(Dimension.ENERGY), _price, step).map(lambda c: (c,)),
        st.builds(Restrictions, max_kwh=st.decimals(min_value=1, max_value=80, places=1)),
    )
    return st.lists(tier, max_size=3).map(tuple)


def _tariff_of(elements: tuple[TariffElement, ...]) -> Tariff:
    return Tariff("P", "EUR", elements)


# Any tariff the file can hold: energy tiers and time-of-day elements in any order, any steps.
_tariff = st.lists(
    st.one_of(_elements(st.integers(1, 1000)), _energy_tiers(st.integers(1, 1000)).map(list)),
    min_size=1,
    max_size=4,
).map(lambda parts: _tariff_of(tuple(_flatten(parts))))


def _flatten(parts: list[TariffElement | list[TariffElement]]) -> list[TariffElement]:
    out: list[TariffElement] = []
    for part in parts:
        out.extend(part if isinstance(part, list) else [part])
    return out or [TariffElement((PriceComponent(Dimension.FLAT, Decimal(1), 1),), None)]


# A tariff under which more energy can never cost less: kWh tiers ahead of the time-of-day
# elements, and energy billed by the Wh. OCPI allows tariffs outside this family where it
# can (see the two tests after the property): a time-of-day element ahead of a dearer kWh
# tier, and a step rounded up at the price of the last element used.
_monotone_tariff = st.tuples(
    _energy_tiers(st.just(1)),
    st.lists(_elements(st.integers(1, 3600)), min_size=1, max_size=3),
).map(
    lambda parts: _tariff_of(
        parts[0]
        + tuple(
            TariffElement(
                tuple(
                    PriceComponent(c.dimension, c.price, 1, c.vat)
                    if c.dimension is Dimension.ENERGY
                    else c
                    for c in e.components
                ),
                e.restrictions,
            )
            for e in parts[1]
        )
    )
)
_start = st.datetimes(
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
_wh = st.integers(0, 150_000).map(lambda wh: Decimal(wh) / 1000)


@settings(max_examples=examples(100), deadline=None)
@given(_tariff, _start, st.integers(0, 12 * 3600), st.integers(0, 6 * 3600), _wh)
def test_cost_is_never_negative_and_vat_never_lowers_it(
    tariff: Tariff, start: datetime, charging: int, parking: int, kwh: Decimal
) -> None:
    costs = price_session(tariff, Usage(start, Decimal(charging), Decimal(parking), kwh), BERLIN)
    assert costs.total.excl_vat >= 0
    assert costs.total.incl_vat is not None and costs.total.incl_vat >= costs.total.excl_vat


@settings(max_examples=examples(100), deadline=None)
@given(
    _monotone_tariff,
    _start,
    st.integers(0, 12 * 3600),
    st.integers(0, 6 * 3600),
    _wh,
    st.integers(0, 50_000).map(lambda wh: Decimal(wh) / 1000),
)
def test_cost_never_falls_with_more_energy_under_tiers_then_times(
    tariff: Tariff, start: datetime, charging: int, parking: int, kwh: Decimal, more: Decimal
) -> None:
    def total(energy: Decimal) -> Decimal:
        usage = Usage(start, Decimal(charging), Decimal(parking), energy)
        return price_session(tariff, usage, BERLIN).total.excl_vat

    assert total(kwh + more) >= total(kwh)


def test_a_step_is_rounded_up_at_the_price_of_the_last_element_used() -> None:
    # 21:51 to 22:00:01 in Berlin: all but the last second under a free element billed by
    # the Wh, the last second under 0.01/kWh in steps of 276 Wh. The total is rounded up to
    # 276 Wh and the extra is billed at 0.01/kWh (mod_tariffs step_size), so a session with
    # 2 Wh has more of its 276 Wh in the free element than one with 1 Wh, and costs less.
    night = TariffElement(
        (PriceComponent(Dimension.ENERGY, Decimal("0.01"), 276),),
        Restrictions(start_time="22:00"),
    )
    free = TariffElement((PriceComponent(Dimension.ENERGY, Decimal("0.00"), 1),), None)
    tariff = _tariff_of((night, free))
    start = datetime(2025, 1, 1, 20, 51, tzinfo=UTC)

    def energy_cost(kwh: str) -> Price | None:
        return price_session(tariff, Usage(start, Decimal(541), _ZERO, Decimal(kwh)), BERLIN).energy

    one, two = energy_cost("0.001"), energy_cost("0.002")
    assert one is not None and two is not None
    # 1 Wh: 0.998 Wh free, 275.002 Wh at 0.01/kWh; 2 Wh: 1.996 Wh free, 274.004 Wh paid.
    assert one.excl_vat == Decimal("0.0028")
    assert two.excl_vat == Decimal("0.0027")


def test_a_time_of_day_element_ahead_of_a_dearer_tier_can_make_more_energy_cheaper() -> None:
    # Energy is free until 22:00; after it, the session's first kWh costs 10.00 and the rest
    # 0.10. An hour from 21:30 in Berlin: with 1.5 kWh, 0.75 kWh are drawn by 22:00, so
    # 0.25 kWh of the first kWh fall after it (2.55); with 3 kWh, 1.5 kWh are drawn by then,
    # so no part of the first kWh is billed (0.15). Both follow the tariff as written.
    free_day = TariffElement(
        (PriceComponent(Dimension.ENERGY, Decimal("0.00"), 1),), Restrictions(end_time="22:00")
    )
    dear_first_kwh = TariffElement(
        (PriceComponent(Dimension.ENERGY, Decimal("10.00"), 1),), Restrictions(max_kwh=Decimal(1))
    )
    cheap = TariffElement((PriceComponent(Dimension.ENERGY, Decimal("0.10"), 1),), None)
    tariff = _tariff_of((free_day, dear_first_kwh, cheap))
    start = datetime(2025, 1, 1, 20, 30, tzinfo=UTC)

    def total(kwh: str) -> Decimal:
        usage = Usage(start, Decimal(3600), _ZERO, Decimal(kwh))
        return price_session(tariff, usage, BERLIN).total.excl_vat

    assert total("1.5") == Decimal("2.55")
    assert total("3.0") == Decimal("0.15")


@settings(max_examples=examples(40), deadline=None)
@given(_tariff)
def test_any_tariff_the_file_can_hold_renders_as_valid_ocpi(tariff: Tariff) -> None:
    validate("Tariff", render_tariff(tariff, "DE", "CPO", UPDATED))
