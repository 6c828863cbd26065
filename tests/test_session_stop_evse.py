"""A session-stop whose connector-id is not the session's EVSE is refused, never applied:
182 "Session not found" when that EVSE has no such session, 181 when the EVSE is unknown."""

from __future__ import annotations

import asyncio
from typing import Any

from cpo_gateway.sim.charger.simulator import SimCharger
from tests.conftest import Harness

EVSE = "DE*CPO*E1001*1"
OTHER_EVSE = "DE*CPO*E1001*2"  # the same charger's other connector
FAR_EVSE = "DE*CPO*E3001*1"  # another charger
EVCO = "DE-8PS-C12345-6"


def result(body: Any) -> tuple[int, str]:
    return int(body["result"]["code"]), str(body["result"]["message"])


async def _state(harness: Harness, session_id: str) -> str:
    session = await harness.store.session(session_id)
    assert session is not None
    return session.state


async def _until_active(harness: Harness, session_id: str) -> None:
    async with asyncio.timeout(10):
        while await _state(harness, session_id) != "active":
            await asyncio.sleep(0.05)


def _stops(cp: SimCharger) -> list[Any]:
    return [p for a, p in cp.received if a == "RemoteStopTransaction"]


async def test_a_stop_for_another_evse_is_182_and_the_session_runs_on(harness: Harness) -> None:
    async with harness.charger("CP-BER-001") as cp, harness.client() as client:
        await cp.connect()
        await cp.status(1, "Available")
        await cp.status(2, "Available")
        _, body = await client.session_start(EVSE, EVCO)
        assert result(body)[0] == 0
        session_id = str(body["session-start"]["session-id"])
        await _until_active(harness, session_id)
        for evse in (OTHER_EVSE, FAR_EVSE):
            status, body = await client.session_stop(evse, EVCO, session_id)
            assert status == 200
            assert result(body) == (
                182,
                f"Session not found: session {session_id} is not on EVSE {evse} (it is on {EVSE}).",
            )
        status, body = await client.session_stop("DE*CPO*E9999*9", EVCO, session_id)
        assert result(body) == (181, "EVSE not found: unknown EVSE DE*CPO*E9999*9.")
        assert _stops(cp) == [] and await _state(harness, session_id) == "active"
        # The right EVSE stops it.
        _, body = await client.session_stop(EVSE, EVCO, session_id)
        assert result(body)[0] == 0
        assert len(_stops(cp)) == 1


async def test_a_pending_start_is_not_failed_by_a_stop_for_another_evse(
    harness: Harness,
) -> None:
    async with (
        harness.charger("CP-BER-001", remote_start="no-plug") as cp,
        harness.client() as client,
    ):
        await cp.connect()
        await cp.status(1, "Available")
        _, body = await client.session_start(EVSE, EVCO)
        session_id = str(body["session-start"]["session-id"])
        _, body = await client.session_stop(OTHER_EVSE, EVCO, session_id)
        assert result(body)[0] == 182
        assert await _state(harness, session_id) == "pending"
        # An ended session is no different: the stop names the wrong EVSE.
        _, body = await client.session_stop(EVSE, EVCO, session_id)
        assert result(body)[0] == 0 and await _state(harness, session_id) == "failed"
        _, body = await client.session_stop(OTHER_EVSE, EVCO, session_id)
        assert result(body)[0] == 182
