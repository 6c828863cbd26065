"""The plausibility check every CDR passes before it leaves (bridge/cdr.review): energy a
connector could not have delivered, negative energy, a stop before its start, and times too
far in the past or ahead of our clock hold the session for review."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.bridge.cdr import (
    ENERGY_ALLOWANCE_KWH,
    MAX_AGE_S,
    build_cdr,
    max_energy_kwh,
    review,
)
from cpo_gateway.bridge.model import Cdr, Interval, User, UserKind
from tests.test_bridge_status_cdr import _session, _tx

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _cdr(start: datetime, stop: datetime | None, kwh: float | None) -> Cdr:
    return Cdr(
        session_id="s-1",
        evse_id="DE*CPO*E1",
        user=User(UserKind.RFID, "AABBCCDD"),
        session_interval=Interval(start.isoformat(), stop.isoformat() if stop else None),
        partner_identifier="partner-0000000001",
        energy_kwh=kwh,
    )


# hypothesis takes naive bounds and attaches the zone itself.
starts = st.datetimes(
    min_value=datetime(2026, 3, 5),  # noqa: DTZ001
    max_value=datetime(2026, 6, 1, 10),  # noqa: DTZ001
    timezones=st.just(UTC),
)
durations = st.integers(min_value=0, max_value=72 * 3600)
speeds = st.floats(min_value=1.0, max_value=400.0)


@given(starts, durations, speeds, st.floats(min_value=0.0, max_value=1.0))
def test_any_energy_within_the_physical_bound_passes(
    start: datetime, seconds: int, speed: float, share: float
) -> None:
    stop = min(start + timedelta(seconds=seconds), NOW)
    bound = max_energy_kwh(speed, (stop - start).total_seconds())
    cdr = _cdr(start, stop, math.floor(bound * share * 1000) / 1000 if share < 1 else bound)
    assert review(cdr, speed, NOW.timestamp()) is None


@given(starts, durations, speeds, st.floats(min_value=0.001, max_value=1e12))
def test_any_energy_above_the_bound_is_held(
    start: datetime, seconds: int, speed: float, excess: float
) -> None:
    stop = min(start + timedelta(seconds=seconds), NOW)
    bound = max_energy_kwh(speed, (stop - start).total_seconds())
    reason = review(_cdr(start, stop, bound + excess), speed, NOW.timestamp())
    assert reason is not None and "above" in reason


def test_the_bound_is_a_margin_on_rated_power_plus_an_allowance() -> None:
    # One hour on 22 kW: 22 kWh, 1.5 x that, plus the allowance for short sessions.
    assert max_energy_kwh(22.0, 3600) == 33.0 + ENERGY_ALLOWANCE_KWH
    assert max_energy_kwh(22.0, -5) == ENERGY_ALLOWANCE_KWH


def test_the_reported_absurd_stop_is_held() -> None:
    # meterStop = 1e12 Wh after 30 minutes on a 22 kW connector.
    tx = _tx(
        started_at="2026-06-01T10:00:00Z", stopped_at="2026-06-01T10:30:00Z",
        meter_start_wh=0.0, meter_stop_wh=1e12,
    )  # fmt: skip
    cdr = build_cdr(tx, _session(), "DE*CPO*E1", "partner-0000000001")
    reason = review(cdr, 22.0, NOW.timestamp())
    assert reason is not None and "1000000000.0 kWh above" in reason


def test_negative_energy_is_held_not_rounded_to_zero() -> None:
    tx = _tx(
        started_at="2026-06-01T10:00:00Z", stopped_at="2026-06-01T10:30:00Z",
        meter_start_wh=5000.0, meter_stop_wh=1000.0,
    )  # fmt: skip
    cdr = build_cdr(tx, _session(), "DE*CPO*E1", "partner-0000000001")
    assert cdr.energy_kwh == -4.0
    reason = review(cdr, 22.0, NOW.timestamp())
    assert reason is not None and reason.startswith("negative energy")


@given(starts, st.integers(min_value=1, max_value=30 * 86400))
def test_a_stop_before_its_start_is_held(start: datetime, seconds: int) -> None:
    reason = review(_cdr(start, start - timedelta(seconds=seconds), 1.0), 22.0, NOW.timestamp())
    assert reason is not None


def test_times_far_in_the_past_or_ahead_are_held() -> None:
    now = NOW.timestamp()
    unset = datetime(1970, 1, 1, tzinfo=UTC)
    assert "before 2010" in str(review(_cdr(unset, unset + timedelta(hours=1), 5.0), 22.0, now))
    old = NOW - timedelta(seconds=MAX_AGE_S + 60)
    assert "90 days old" in str(review(_cdr(old, old + timedelta(hours=1), 5.0), 22.0, now))
    ahead = NOW + timedelta(hours=2)
    assert "ahead of our clock" in str(review(_cdr(NOW, ahead, 5.0), 22.0, now))
    # Minutes of clock skew are not a reason.
    assert (
        review(_cdr(NOW - timedelta(hours=1), NOW + timedelta(minutes=5), 5.0), 22.0, now) is None
    )


def test_a_start_time_cdr_has_no_energy_and_is_judged_by_its_times() -> None:
    now = NOW.timestamp()
    assert review(_cdr(NOW - timedelta(minutes=1), None, None), 22.0, now) is None
    unset = datetime(2000, 1, 1, tzinfo=UTC)
    assert review(_cdr(unset, None, None), 22.0, now) is not None


def test_an_unknown_speed_still_checks_the_rest() -> None:
    now = NOW.timestamp()
    start = NOW - timedelta(minutes=30)
    assert review(_cdr(start, NOW, 1e9), None, now) is None
    assert review(_cdr(start, NOW, -1.0), None, now) is not None
