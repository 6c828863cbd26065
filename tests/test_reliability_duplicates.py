"""Duplicates: every StartTransaction, StopTransaction and MeterValues replayed three times,
with the same and with new message ids, makes one session and one CDR with the energy counted
once. Stops for transactions the gateway never saw (unknown, -1, 0) are acknowledged and
become a CDR."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER, Harness, running_gateway, write_config

CARD = "0A0B0C0D"
EVSE = "DE*CPO*E1001*1"


async def _whitelist(h: Harness) -> None:
    async with h.client() as client:
        status, _ = await client.rfid_post(PARTNER, [CARD])
    assert status == 200


async def _sessions(h: Harness) -> list[dict[str, Any]]:
    rows = await h.store.db.all("SELECT * FROM sessions ORDER BY created_at")
    return [dict(r) for r in rows]


async def test_each_transaction_message_three_times_gives_one_session_and_cdr(
    harness: Harness,
) -> None:
    h, emp = harness, harness.emp
    await _whitelist(h)
    async with h.charger("CP-BER-001") as cp:
        await cp.connect()
        tx = await cp.start_transaction(
            1, CARD, meter_start=10_000, timestamp=datetime.now(UTC) - timedelta(hours=1)
        )
        starts = await cp.replay_last(1, same_id=True) + await cp.replay_last(1, same_id=False)
        starts += await cp.replay_last(1, same_id=True)
        assert {s["transactionId"] for s in starts} == {tx}
        await cp.meter_values(1, tx, 12_000)
        for same in (True, False, True):
            assert await cp.replay_last(1, same_id=same) == [{}]
        await cp.stop_transaction(tx, 15_000)
        for same in (True, False, True):
            (stop,) = await cp.replay_last(1, same_id=same)
            assert stop.get("idTagInfo", {"status": "Accepted"})["status"] == "Accepted"
        # The whole transaction again, as a charger replaying its queue after a reconnect.
        for same in (True, False, True):
            await cp.replay_last(3, same_id=same)
        await emp.wait_for(lambda: len(emp.cdrs) == 1)
        assert not cp.call_errors
    sessions = await _sessions(h)
    assert len(sessions) == 1 and sessions[0]["transaction_id"] == tx
    (cdr,) = emp.cdrs.values()
    assert cdr["energy-consumed"] == 5.0, "energy counted once: 15 kWh - 10 kWh"
    assert cdr["connector-id"] == EVSE
    # At most the one CDR was posted: replays create no new outbox rows.
    rows = await h.store.db.all("SELECT id FROM outbox WHERE kind = 'cdr'")
    assert len(rows) == 1


@pytest.mark.parametrize("transaction_id", [987654, -1, 0])
async def test_stop_for_an_unseen_transaction_is_acknowledged_and_a_cdr(
    harness: Harness, transaction_id: int
) -> None:
    h, emp = harness, harness.emp
    await _whitelist(h)
    async with h.charger("CP-BER-001") as cp:
        await cp.connect()
        conf = await cp.stop_transaction(transaction_id, 7000, id_tag=CARD)
        assert conf is not None and conf["idTagInfo"]["status"] == "Accepted"
        await emp.wait_for(lambda: len(emp.cdrs) == 1)
        assert not cp.call_errors
    (cdr,) = emp.cdrs.values()
    assert cdr["user"] == {"identifier-type": "rfid", "identifier": CARD}
    assert cdr["session-interval"]["stop"]
    (session,) = await _sessions(h)
    assert session["origin"] == "orphan" and session["emp"] == "sandbox"


@pytest.mark.parametrize("transaction_id", [987654, -1, 0])
async def test_an_unseen_stop_replayed_three_times_is_one_cdr(
    harness: Harness, transaction_id: int
) -> None:
    h, emp = harness, harness.emp
    await _whitelist(h)
    async with h.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.stop_transaction(transaction_id, 7000, id_tag=CARD)
        for same in (True, False, True):
            await cp.replay_last(1, same_id=same)
        await emp.wait_for(lambda: len(emp.cdrs) >= 1)
        assert not cp.call_errors
    assert len(await _sessions(h)) == 1
    assert len(emp.cdrs) == 1


async def test_a_stop_without_id_tag_for_an_unseen_transaction_is_kept_locally(
    harness: Harness,
) -> None:
    async with harness.charger("CP-BER-001") as cp:
        await cp.connect()
        conf = await cp.stop_transaction(-1, 7000)
        assert conf is not None and not cp.call_errors
    # No idTag: no EMP to bill, so the CDR stays with the CPO (`cpo-gateway sessions list`).
    (session,) = await _sessions(harness)
    assert session["origin"] == "orphan" and session["emp"] is None
    assert session["state"] != "active"


@pytest.fixture(params=[300.0, 0.0], ids=["answer-cached", "no-cache"])
async def online_harness(
    request: pytest.FixtureRequest, tmp_path: Path, emp: SandboxEmp
) -> AsyncIterator[Harness]:
    ttl = request.param
    cfg = load_config(
        write_config(tmp_path, emp_url=emp.url, sessions=f"auth_cache_ttl_s = {ttl}"), {}
    )
    async with running_gateway(Gateway(cfg), emp) as h:
        yield h


async def test_a_replayed_start_of_an_online_card_asks_the_emp_once(
    online_harness: Harness,
) -> None:
    """Not on the whitelist: the first StartTransaction asks the EMP (rfid-verify); its
    replays are answered from the stored transaction, whether or not the answer is cached."""
    h, emp = online_harness, online_harness.emp
    emp.verify_codes = {CARD: 0}
    async with h.charger("CP-BER-001") as cp:
        await cp.connect()
        tx = await cp.start_transaction(1, CARD, meter_start=0)
        replies = []
        for same in (True, False, True):
            replies += await cp.replay_last(1, same_id=same)
        assert not cp.call_errors
    assert [r["transactionId"] for r in replies] == [tx] * 3
    assert {r["idTagInfo"]["status"] for r in replies} == {"Accepted"}
    assert len(emp.calls("rfid-verify")) == 1
    (session,) = await _sessions(h)
    assert (session["auth_path"], session["emp"]) == ("online", "sandbox")
