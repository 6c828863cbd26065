"""Status toward the EMP (mapping, shared EVSEs, debounce, offline grace, resync) and CDRs
(intervals, energy, users)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cpo_gateway.bridge.cdr import build_cdr, cdr_from_dict, cdr_to_dict
from cpo_gateway.bridge.model import ConnectorState, EnergySample, EvseStatus, UserKind
from cpo_gateway.bridge.ports import SessionRecord, TxRecord
from cpo_gateway.bridge.status import aggregate, map_state
from cpo_gateway.store.sessions import _merge_samples
from tests.conftest import Harness


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (ConnectorState.AVAILABLE, EvseStatus.AVAILABLE),
        (ConnectorState.PREPARING, EvseStatus.OCCUPIED),
        (ConnectorState.CHARGING, EvseStatus.OCCUPIED),
        (ConnectorState.SUSPENDED_EV, EvseStatus.OCCUPIED),
        (ConnectorState.SUSPENDED_EVSE, EvseStatus.OCCUPIED),
        (ConnectorState.FINISHING, EvseStatus.OCCUPIED),
        (ConnectorState.RESERVED, EvseStatus.RESERVED),
        (ConnectorState.UNAVAILABLE, EvseStatus.OFFLINE),
        (ConnectorState.FAULTED, EvseStatus.OFFLINE),
        (None, EvseStatus.UNKNOWN),
    ],
)
def test_mapping(state: ConnectorState | None, expected: EvseStatus) -> None:
    assert map_state(state, online=True) is expected
    assert map_state(state, online=False) is EvseStatus.OFFLINE


def test_occupied_wins_on_a_shared_evse() -> None:
    assert aggregate([EvseStatus.AVAILABLE, EvseStatus.OCCUPIED]) is EvseStatus.OCCUPIED
    assert aggregate([EvseStatus.OFFLINE, EvseStatus.AVAILABLE]) is EvseStatus.AVAILABLE
    assert aggregate([EvseStatus.UNKNOWN, EvseStatus.OFFLINE]) is EvseStatus.OFFLINE
    assert aggregate([]) is EvseStatus.UNKNOWN


def _tx(**kw: Any) -> TxRecord:
    base: dict[str, Any] = {
        "id": 7, "session_id": "s-1", "charge_point": "CP", "connector": 1, "id_tag": "AABBCCDD",
        "started_at": "2026-01-01T10:00:00Z", "meter_start_wh": 1000.0,
        "stopped_at": "2026-01-01T11:00:00+01:00", "meter_stop_wh": 12500.0,
        "first_wh": 1000.0, "first_wh_at": "2026-01-01T10:00:00Z", "last_wh": 12500.0,
        "last_wh_at": "2026-01-01T11:00:00+01:00",
        "charge_start_at": "2026-01-01T10:01:00Z", "charge_stop_at": "2026-01-01T10:50:00Z",
    }  # fmt: skip
    base.update(kw)
    return TxRecord(**base)


def _session(**kw: Any) -> SessionRecord:
    base: dict[str, Any] = {
        "id": "s-1", "evse_id": "DE*CPO*E1", "charge_point": "CP", "connector": 1, "emp": "e", "origin": "card",
        "user_kind": "rfid", "user_id": "AABBCCDD", "id_tag": "aabbccdd", "auth_status": "Accepted",
        "auth_path": "whitelist", "state": "finished", "created_at": "2026-01-01T10:00:00+00:00",
        "expires_at": None, "transaction_id": 7,
    }  # fmt: skip
    base.update(kw)
    return SessionRecord(**base)


def test_cdr_fields_and_round_trip() -> None:
    cdr = build_cdr(_tx(), _session(), "DE*CPO*E1", "partner-0000000001")
    assert cdr.energy_kwh == 11.5
    assert cdr.session_interval.start == "2026-01-01T10:00:00+00:00"
    assert cdr.session_interval.stop == "2026-01-01T11:00:00+01:00"  # the charger's offset kept
    assert (
        cdr.charging_interval is not None
        and cdr.charging_interval.stop == "2026-01-01T10:50:00+00:00"
    )
    assert cdr.user.kind is UserKind.RFID and cdr.user.identifier == "AABBCCDD"
    assert cdr_from_dict(cdr_to_dict(cdr)) == cdr


def test_cdr_without_meter_progress_omits_charging_interval() -> None:
    cdr = build_cdr(_tx(charge_start_at=None, charge_stop_at=None), _session(), "E", "p")
    assert cdr.charging_interval is None
    running = build_cdr(_tx(stopped_at=None), _session(), "E", "p")
    assert running.session_interval.stop is None and running.energy_kwh is None


def test_meter_samples_fold_into_first_last_and_charging_moments() -> None:
    row: dict[str, object] = dict.fromkeys(
        ("first_wh", "first_wh_at", "last_wh", "last_wh_at", "charge_start_at", "charge_stop_at")
    )
    merged = _merge_samples(
        row,
        [
            EnergySample("2026-01-01T10:00:00Z", 100.0),
            EnergySample("2026-01-01T10:05:00Z", 100.0),
            EnergySample("2026-01-01T10:10:00Z", 900.0),
            EnergySample("2026-01-01T10:20:00Z", 1500.0),
            EnergySample("2026-01-01T10:30:00Z", 1500.0),
        ],
    )
    assert (merged["first_wh"], merged["last_wh"]) == (100.0, 1500.0)
    assert merged["charge_start_at"] == "2026-01-01T10:05:00Z"
    assert merged["charge_stop_at"] == "2026-01-01T10:20:00Z"


async def test_shared_evse_debounce_offline_and_resync(harness: Harness) -> None:
    emp = harness.emp
    shared = "DE*CPO*E2001"
    await emp.wait_for(lambda: len(emp.stations) == 3, timeout=10)
    async with harness.charger("CP-MUC-DC1") as cp:
        await cp.connect()
        await cp.status(1, "Available")
        await cp.status(2, "Available")
        await emp.wait_for(lambda: emp.statuses.get(shared) == "Available")
        await cp.status(2, "Charging")
        await emp.wait_for(lambda: emp.statuses.get(shared) == "Occupied")
        posts = len(emp.calls("connector-post-status"))
        # Flapping inside the debounce window posts nothing new.
        await cp.status(2, "Available")
        await cp.status(2, "Charging")
        await asyncio.sleep(1.0)
        assert len(emp.calls("connector-post-status")) == posts
        await cp.disconnect()
        await emp.wait_for(lambda: emp.statuses.get(shared) == "Offline", timeout=5)
        await cp.connect(boot=False)
        # The gateway asks for the statuses again after a reconnect: this charger says
        # nothing, so after the grace for its first message.
        await emp.wait_for(
            lambda: any(a == "TriggerMessage" for a, _ in cp.received[-3:]), timeout=10
        )
        await emp.wait_for(lambda: emp.statuses.get(shared) == "Occupied", timeout=5)
