"""Scheduled jobs: one delivery job per EMP, no job overlaps itself, and stop() leaves nothing
running."""

from __future__ import annotations

import asyncio

from cpo_gateway.jobs import Jobs
from tests.conftest import Harness


def make_jobs(h: Harness) -> Jobs:
    assert h.gateway.core is not None
    return Jobs(h.gateway.core, outbox_tick_s=60.0, status_resync_h=1.0, prune_after_days=7)


async def test_there_is_one_delivery_job_per_emp(harness: Harness) -> None:
    jobs = make_jobs(harness)
    names = {job.id for job in jobs.scheduler.get_jobs()}
    assert "outbox:sandbox" in names
    assert {"status-flush", "expire-starts", "local-list", "status-resync"} <= names


async def test_a_job_never_overlaps_itself(harness: Harness) -> None:
    jobs = make_jobs(harness)
    active = 0
    peak = 0
    runs = 0

    async def slow() -> None:
        nonlocal active, peak, runs
        active += 1
        peak = max(peak, active)
        try:
            await asyncio.sleep(0.25)  # five intervals long
        finally:
            active -= 1
            runs += 1

    jobs.every("slow", 0.05, slow)
    jobs.start()
    try:
        for _ in range(200):  # bounded: at most 4 s
            if runs >= 3:
                break
            await asyncio.sleep(0.02)
    finally:
        cancelled = await jobs.stop(grace_s=1.0)
    assert runs >= 3 and peak == 1
    assert cancelled == 0 and jobs.running == 0


async def test_stop_waits_for_a_running_job_then_cancels_what_outlives_the_grace(
    harness: Harness,
) -> None:
    jobs = make_jobs(harness)
    started = asyncio.Event()
    finished: list[str] = []

    async def short() -> None:
        started.set()
        await asyncio.sleep(0.1)
        finished.append("short")

    async def endless() -> None:
        await asyncio.sleep(3600)
        finished.append("endless")

    jobs.every("short", 0.05, short)
    jobs.every("endless", 0.05, endless)
    jobs.start()
    async with asyncio.timeout(5):
        await started.wait()
    for _ in range(250):  # bounded: until both runs have begun
        if jobs.running >= 2:
            break
        await asyncio.sleep(0.02)
    assert jobs.running == 2
    cancelled = await jobs.stop(grace_s=0.5)
    assert cancelled == 1
    assert "short" in finished and "endless" not in finished
    assert jobs.running == 0 and not jobs.scheduler.running
    assert jobs.failures == {}
    count = len(finished)
    await asyncio.sleep(0.2)
    assert len(finished) == count  # nothing runs after stop
    jobs.pause()  # stopping twice is harmless
    jobs.shutdown()
