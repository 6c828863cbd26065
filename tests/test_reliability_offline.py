"""Offline transactions: Start and Stop stamped hours in the past, queued by a charger cut off
from the gateway and sent after it reconnects, keep their original timestamps. A card the EMP
does not know gets Invalid in StartTransaction.conf and its session is still recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cpo_gateway.sim.charger.simulator import SimCharger
from tests.conftest import PARTNER, Harness

CARD = "0A0B0C0D"  # on the EMP's whitelist
UNKNOWN = "DEADBEEF"  # rfid-verify answers 191
BLOCKED = "0B10C0ED"  # rfid-verify answers 192


async def _offline_session(
    cp: SimCharger, connector: int, card: str, start: datetime, stop: datetime
) -> None:
    tx = await cp.start_transaction(connector, card, meter_start=1000, timestamp=start)
    await cp.meter_values(connector, tx, 2500, timestamp=start + timedelta(minutes=10))
    await cp.stop_transaction(tx, 4000, timestamp=stop)


async def _tx(h: Harness, id_tag: str) -> dict[str, Any]:
    row = await h.store.db.one(
        "SELECT t.*, s.emp, s.auth_status, s.state FROM transactions t "
        "JOIN sessions s ON s.id = t.session_id WHERE t.id_tag = ?",
        (id_tag,),
    )
    assert row is not None, f"no transaction recorded for {id_tag}"
    return dict(row)


def _start_answers(cp: SimCharger) -> list[str]:
    return [a["idTagInfo"]["status"] for act, a in cp.answers if act == "StartTransaction"]


async def _play_offline(h: Harness, cards: list[str]) -> tuple[SimCharger, datetime]:
    async with h.client() as client:
        assert (await client.rfid_post(PARTNER, [CARD]))[0] == 200
    h.emp.verify_codes = {BLOCKED: 192}
    now = datetime.now(UTC).replace(microsecond=0)
    cp = h.charger("CP-BER-001")
    await cp.connect()
    await cp.disconnect()
    for i, card in enumerate(cards):
        start = now - timedelta(hours=5 - i)
        await _offline_session(cp, 1 + i % 2, card, start, start + timedelta(minutes=50))
    assert cp.pending == 3 * len(cards)
    await cp.connect(boot=False)
    assert cp.pending == 0 and not cp.dropped
    return cp, now


async def test_offline_sessions_keep_their_timestamps_and_reach_the_emp(harness: Harness) -> None:
    h, emp = harness, harness.emp
    cp, now = await _play_offline(h, [CARD, UNKNOWN])
    try:
        assert _start_answers(cp) == ["Accepted", "Invalid"]
        await emp.wait_for(lambda: len(emp.cdrs) == 1)
    finally:
        await cp.close()
    (cdr,) = emp.cdrs.values()
    start = now - timedelta(hours=5)
    assert datetime.fromisoformat(cdr["session-interval"]["start"]) == start
    assert datetime.fromisoformat(cdr["session-interval"]["stop"]) == start + timedelta(minutes=50)
    assert cdr["energy-consumed"] == 3.0
    # The unknown card: answered Invalid, the session recorded with the charger's timestamps.
    # No EMP authorized it, so its CDR is kept by the CPO (`cpo-gateway sessions list`).
    unknown = await _tx(h, UNKNOWN)
    assert unknown["auth_status"] == "Invalid" and unknown["emp"] is None
    started = now - timedelta(hours=4)
    assert datetime.fromisoformat(unknown["started_at"].replace("Z", "+00:00")) == started
    assert unknown["stopped_at"] is not None and unknown["meter_stop_wh"] == 4000


async def test_the_cdr_of_a_card_blocked_by_its_emp_reaches_that_emp(harness: Harness) -> None:
    """Blocked by its EMP (rfid-verify 192): the charger is told Blocked, the session is
    recorded, and it belongs to that EMP, which gets the CDR."""
    cp, _ = await _play_offline(harness, [BLOCKED])
    await cp.close()
    assert _start_answers(cp) == ["Blocked"]
    blocked = await _tx(harness, BLOCKED)
    assert blocked["auth_status"] == "Blocked" and blocked["stopped_at"] is not None
    assert blocked["emp"] == "sandbox"
    await harness.emp.wait_for(lambda: len(harness.emp.cdrs) == 1, timeout=3)
