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
from cpo_gateway.ocpi.tariffs import Usage, price_session, render_tariff
from cpo_gateway.tomlcheck import ConfigError
from tests.ocpi_fixtures import STATIONS, catalogue
from tests.ocpi_models import validate

BERLIN = ZoneInfo("Europe/Berlin")
UPDATED = "2026-03-01T10:00:00Z"


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
# kWh bounds only on elements that price nothing but energy: more energy may reach a kWh
# threshold sooner, which may end a dearer TIME element early (OCPI allows that tariff).
_restrictions = st.builds(
    Restrictions,
    start_time=_times,
    end_time=_times,
    min_duration=st.one_of(st.none(), st.integers(0, 7200)),
    max_duration=st.one_of(st.none(), st.integers(7201, 20000)),
)
_element = st.builds(
    TariffElement,
    st.lists(_component, min_size=1, max_size=4, unique_by=lambda c: c.dimension).map(tuple),
    st.one_of(st.none(), _restrictions),
)
_energy_tier = st.builds(
    TariffElement,
    st.builds(PriceComponent, st.just(Dimension.ENERGY), _price, st.integers(1, 1000)).map(
        lambda c: (c,)
    ),
    st.builds(Restrictions, max_kwh=st.decimals(min_value=1, max_value=80, places=1)),
)
_tariff = st.builds(
    Tariff,
    st.just("P"),
    st.just("EUR"),
    st.lists(st.one_of(_element, _energy_tier), min_size=1, max_size=4).map(tuple),
)
_start = st.datetimes(
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=100, deadline=None)
@given(
    _tariff,
    _start,
    st.integers(0, 12 * 3600),
    st.integers(0, 6 * 3600),
    st.decimals(min_value=0, max_value=150, places=3),
    st.decimals(min_value=0, max_value=50, places=3),
)
def test_cost_is_never_negative_and_never_falls_with_more_energy(
    tariff: Tariff, start: datetime, charging: int, parking: int, kwh: Decimal, more: Decimal
) -> None:
    usage = Usage(start, Decimal(charging), Decimal(parking), kwh)
    costs = price_session(tariff, usage, BERLIN)
    assert costs.total.excl_vat >= 0
    assert costs.total.incl_vat is not None and costs.total.incl_vat >= costs.total.excl_vat
    richer = price_session(
        tariff, Usage(start, Decimal(charging), Decimal(parking), kwh + more), BERLIN
    )
    assert richer.total.excl_vat >= costs.total.excl_vat


@settings(max_examples=40, deadline=None)
@given(_tariff)
def test_any_tariff_the_file_can_hold_renders_as_valid_ocpi(tariff: Tariff) -> None:
    validate("Tariff", render_tariff(tariff, "DE", "CPO", UPDATED))
