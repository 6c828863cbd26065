"""A connector's statuses are ordered by their own timestamps within a sane window, and live
evidence (meter values of a running transaction) beats a status that contradicts it.

Real gateway, real SimCharger over a websocket, real sandbox EMP.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.core import Core
from cpo_gateway.bridge.model import BootInfo, ConnectorState, StatusReport
from cpo_gateway.bridge.status import StatusTracker
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.stations import load_stations
from cpo_gateway.store import Store
from tests.conftest import EXAMPLE_STATIONS, Harness
from tests.storage import make_database

CP = "CP-BER-001"
EVSE = "DE*CPO*E1001*1"
UNSET_CLOCK = datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)


def _core(harness: Harness) -> Core:
    core = harness.gateway.core
    assert core is not None
    return core


def _posted(emp: SandboxEmp, evse: str) -> list[str]:
    """Every status the EMP received for `evse`, in order."""
    out = []
    for body in emp.calls("connector-post-status"):
        inner: dict[str, Any] = body.get("connector-post-status", body)
        if inner.get("connector-id") == evse:
            out.append(str(inner["status"]))
    return out


async def _resync(harness: Harness, evse: str) -> str:
    """Post every EVSE's current status once more and return what the EMP now holds for
    `evse` (waits for that post to be delivered)."""
    emp = harness.emp
    before = len(_posted(emp, evse))
    await _core(harness).status.flush(force=True)
    await emp.wait_for(lambda: len(_posted(emp, evse)) > before, timeout=10)
    return emp.statuses[evse]


def _charger(harness: Harness, stamp: list[datetime | None]) -> SimCharger:
    clock: Callable[[], datetime] = lambda: stamp[0] or datetime.now(UTC)  # noqa: E731
    return harness.charger(CP, clock=clock)


async def test_status_stamped_1970_after_a_current_one_does_not_win(harness: Harness) -> None:
    emp = harness.emp
    stamp: list[datetime | None] = [None]
    async with _charger(harness, stamp) as cp:
        await cp.connect()
        await cp.status(1, "Available")
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Available", timeout=10)
        # Queued before the charger's clock was set, sent after the current status.
        stamp[0] = UNSET_CLOCK
        await cp.status(1, "Unavailable")
        await cp.status(1, "Faulted", error_code="OtherError")
        assert await _resync(harness, EVSE) == "Available"
        assert "Offline" not in _posted(emp, EVSE)
        # What the charger sent is kept for the record, though not applied.
        rows = await harness.gateway.db.all(
            "SELECT state, reported_at FROM connector_status_ignored WHERE charge_point = ? "
            "AND connector = 1 ORDER BY id",
            (CP,),
        )
        assert [r[0] for r in rows] == ["Unavailable", "Faulted"]
        assert all(r[1].startswith("1970-01-01") for r in rows)


async def test_stale_stamps_apply_in_arrival_order_while_nothing_trusted_is_known(
    harness: Harness,
) -> None:
    """A charger whose clock is never set: its statuses are all it tells, in arrival order."""
    emp = harness.emp
    stamp: list[datetime | None] = [UNSET_CLOCK]
    async with _charger(harness, stamp) as cp:
        await cp.connect()
        await cp.status(1, "Available")
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Available", timeout=10)
        await cp.status(1, "Unavailable")
        assert await _resync(harness, EVSE) == "Offline"


async def test_older_trustworthy_stamp_does_not_override_a_newer_one(harness: Harness) -> None:
    emp = harness.emp
    now = datetime.now(UTC)
    stamp: list[datetime | None] = [now]
    async with _charger(harness, stamp) as cp:
        await cp.connect()
        await cp.status(1, "Charging")
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Occupied", timeout=10)
        # Sent later, but stamped a minute earlier (a delayed retry of an older message).
        stamp[0] = now - timedelta(seconds=60)
        await cp.status(1, "Available")
        assert await _resync(harness, EVSE) == "Occupied"
        # A newer stamp is applied.
        stamp[0] = now + timedelta(seconds=1)
        await cp.status(1, "Available")
        assert await _resync(harness, EVSE) == "Available"


async def test_status_stamped_far_in_the_future_does_not_win(harness: Harness) -> None:
    emp = harness.emp
    stamp: list[datetime | None] = [None]
    async with _charger(harness, stamp) as cp:
        await cp.connect()
        await cp.status(1, "Available")
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Available", timeout=10)
        stamp[0] = datetime.now(UTC) + timedelta(days=400)
        await cp.status(1, "Unavailable")
        assert await _resync(harness, EVSE) == "Available"


async def test_faulted_while_meter_values_flow_does_not_post_offline(harness: Harness) -> None:
    emp = harness.emp
    async with harness.charger(CP) as cp, harness.client() as client:
        await cp.connect()
        await cp.status(1, "Available")
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Available", timeout=10)
        _, body = await client.session_start(EVSE, "DE-8PS-C12345-6")
        assert body["result"]["code"] == 0
        await emp.wait_for(lambda: cp.transaction_id(1) is not None, timeout=10)
        tx = cp.transaction_id(1)
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Occupied", timeout=10)
        await cp.meter_values(1, tx, 1200)
        await cp.status(1, "Faulted", error_code="GroundFailure")
        await cp.meter_values(1, tx, 1400)
        assert await _resync(harness, EVSE) == "Occupied"
        assert "Offline" not in _posted(emp, EVSE)
        # Once the transaction has ended, a fault is a fault.
        assert tx is not None
        await cp.stop_transaction(tx, 1500)
        await cp.status(1, "Faulted", error_code="GroundFailure")
        assert await _resync(harness, EVSE) == "Offline"


async def test_faulted_without_a_running_transaction_is_offline(harness: Harness) -> None:
    emp = harness.emp
    async with harness.charger(CP) as cp:
        await cp.connect()
        await cp.status(1, "Available")
        await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Available", timeout=10)
        # Meter values without a transaction are no evidence of a running session.
        await cp.meter_values(1, None, 1000)
        await cp.status(1, "Faulted", error_code="GroundFailure")
        assert await _resync(harness, EVSE) == "Offline"


async def test_trust_survives_a_restart_and_ends_with_a_reboot(tmp_path: Path) -> None:
    """The judgement uses what is stored: a restarted gateway still refuses a 1970 stamp
    after a trusted status, and a reboot of the charger starts its judgement afresh."""
    catalogue = load_stations(EXAMPLE_STATIONS)
    now = [1_800_000_000.0]  # 2027-01-15

    def stamp(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")

    def tracker(store: Store) -> StatusTracker:
        return StatusTracker(
            store, catalogue, {}, debounce_s=0.0, offline_grace_s=1.0, clock=lambda: now[0]
        )

    def report(state: ConnectorState, at: str) -> StatusReport:
        return StatusReport(CP, 1, state, timestamp=at)

    db = make_database(tmp_path / "gateway.db")
    await db.open()
    try:
        store = Store(db)
        first = tracker(store)
        await first.load()
        await store.record_boot(BootInfo(CP, "v", "m"), "Accepted", rfc3339(now[0]))
        first.booted(CP)
        await first.report(report(ConnectorState.AVAILABLE, stamp(now[0] + 1)))
        now[0] += 10
        second = tracker(store)  # the gateway restarted
        await second.load()
        await second.report(report(ConnectorState.UNAVAILABLE, "1970-01-01T00:00:07Z"))
        assert second.state(CP, 1) is ConnectorState.AVAILABLE
        # The charger reboots an hour later with its clock unset: what it says now is all
        # it has told since that boot.
        now[0] += 3600
        second.booted(CP)
        await second.report(report(ConnectorState.UNAVAILABLE, "1970-01-01T00:00:09Z"))
        assert second.state(CP, 1) is ConnectorState.UNAVAILABLE
    finally:
        await db.close()
