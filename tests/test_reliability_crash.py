"""Crash: the gateway daemon is killed with SIGKILL at random moments while chargers run card
sessions, then restarted on the same ports and database. Every session a charger saw
acknowledged ends as exactly one CDR at the EMP; re-deliveries are counted, never lost.

The long version is `scripts/soak crash --sessions 1000`.
"""

from __future__ import annotations

from pathlib import Path

from cpo_gateway.bench.soak.crash import run_crash


async def test_sigkill_at_random_moments_loses_no_cdr(tmp_path: Path) -> None:
    report = await run_crash(tmp_path, sessions=50, chargers=10, seed=7, time_limit_s=150)
    print("\n".join(report.lines()))
    log = tmp_path / "gateway.log"
    assert report.kills >= 2, "the scenario must kill the gateway more than once"
    assert report.acknowledged == 50 and report.still_queued == 0
    assert report.dropped_by_chargers == 0, "a charger gave up on a transaction message"
    assert report.missing == [], f"sessions without a CDR at the EMP; see {log}"
    assert report.split == [], "one charger session became several OIOI sessions"
    assert report.unexpected == 0 and report.wrong_energy == []
    # The EMP deduplicates by session-id: 50 stored, whatever was re-delivered.
    assert report.cdrs == 50
    assert report.exit_code == 0
