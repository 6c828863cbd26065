"""Ops acting on a CDR held for a 2.0.1 Started that has not come (`sessions correct`, or
`release`) while that Started arrives: whichever commits first releases it, the other finds
it no longer held, and the EMP is owed exactly one CDR."""

from __future__ import annotations

import asyncio

from cpo_gateway.bridge.late_reports import WAITING_DETAIL
from cpo_gateway.bridge.model import EnergySample, LateReport
from cpo_gateway.bridge.ports import SessionState
from tests.charger201 import Memory, charger201, meter, stamp
from tests.conftest import Harness
from tests.test_v201_order import CP, TOKEN, UID, _cdr_rows, _ended, _session_of, _whitelist


async def test_ops_correcting_a_held_cdr_while_its_started_comes_releases_one_cdr(
    harness: Harness,
) -> None:
    h = harness
    await _whitelist(h)
    keys = ["OPS-RACE", "OPS-FIRST", "START-FIRST"]
    async with charger201(h.ocpp_url, CP, Memory()) as cp:
        for key in keys:
            await _ended(cp, key, 4, 6_000, 900)
            # The card and the EVSE came late, so ops may release it; the Started has not.
            await cp.event(
                "Updated", key, seq=2, trigger="Authorized", at=400, evse=2, token=TOKEN,
                meter_value=meter(5_500, 400),
            )  # fmt: skip
    core = h.gateway.core

    def started(key: str) -> LateReport:
        return LateReport(
            CP, key, 2, UID, stamp(5), started=True, samples=(EnergySample(stamp(5), 1_000.0),)
        )

    held = {key: await _session_of(h, key) for key in keys}
    assert all(s.detail == WAITING_DETAIL and s.emp is not None for s in held.values())
    race = held["OPS-RACE"].id
    outcomes = await asyncio.gather(
        core.release_held_cdr(race, kwh=4.0), core.late_report(started("OPS-RACE")),
        core.release_held_cdr(race),
    )  # fmt: skip
    first = await core.release_held_cdr(held["OPS-FIRST"].id, kwh=4.0)
    assert first.ok, first
    await core.late_report(started("OPS-FIRST"))
    await core.late_report(started("START-FIRST"))
    late = await core.release_held_cdr(held["START-FIRST"].id, kwh=4.0)
    assert not late.ok and "no session held" in late.detail, late
    releases = [o for o in outcomes[::2] if getattr(o, "ok", False)]
    assert len(releases) <= 1, outcomes
    rows = await _cdr_rows(h)
    assert sorted(r["key"] for r in rows) == sorted(s.id for s in held.values()), rows
    for key in keys:
        assert (await _session_of(h, key)).state is SessionState.FINISHED
