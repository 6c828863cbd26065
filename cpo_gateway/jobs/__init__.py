"""Scheduled work (APScheduler 3): outbox delivery, status flush and resync, station sync,
expiry of pending remote starts, local-list retries, reconciling ghost sessions,
housekeeping."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from cpo_gateway import logs
from cpo_gateway.bridge.core_ports import ScheduledWork
from cpo_gateway.bridge.storage import StorageUnavailable

log = logs.get(__name__)

# A job is run afresh on each tick (its schedule is its restart policy); one whose last
# FAILING_AFTER runs all failed makes the gateway unhealthy, so the systemd watchdog restarts
# the process instead of leaving it retrying a broken job forever.
FAILING_AFTER = 3
# Jobs a cluster runs on one node at a time (the node holding the job's lease): each is a
# pass over the shared database that every node would otherwise repeat.
ONCE_PER_CLUSTER = ("status-resync", "housekeeping")


class Jobs:
    """The scheduled work, on APScheduler 3: outbox delivery ticks, station sync, the status
    resync, pending-start expiry, local-list pushes and pruning of delivered rows.

    Owns the scheduler and its job definitions only: each job calls the core and holds no
    state of its own, so a missed or coalesced run is caught up by the next one. It never
    runs two instances of a job at once.
    """

    def __init__(
        self,
        core: ScheduledWork,
        *,
        outbox_tick_s: float,
        status_resync_h: float,
        prune_after_days: int,
        clock: Callable[[], float] = time.time,
        leased: Callable[[str], bool] | None = None,
    ) -> None:
        """`leased(job)`: whether this node holds the lease of a ONCE_PER_CLUSTER job
        (None: no cluster, every job runs here)."""
        self._core = core
        self._leased = leased
        self.skipped: dict[str, int] = {}  # runs left to the node holding the lease
        self._clock = clock
        self._prune_s = prune_after_days * 86400.0
        self.scheduler = AsyncIOScheduler()
        self.runs: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self._in_a_row: dict[str, int] = {}  # consecutive failed runs
        self._running: set[asyncio.Task[Any]] = set()
        self._defined: dict[str, tuple[float, Callable[[], Awaitable[None]]]] = {}
        every = self.every
        # One delivery job per EMP: a slow or unreachable EMP delays only its own queue.
        for emp in core.delivering_to:
            every(f"outbox:{emp}", outbox_tick_s, functools.partial(core.deliver, emp))
        every("status-flush", 0.5, core.flush_statuses)
        every("expire-starts", 5.0, core.expire_pending_starts)
        every("local-list", 60.0, core.push_local_lists)
        # Often enough that a ghost is closed soon after its grace, never more than 4 per second.
        ghost_tick = max(0.25, min(60.0, core.ghost_grace_s / 2))
        every("reconcile-ghosts", ghost_tick, core.reconcile_ghosts)
        every("status-resync", status_resync_h * 3600.0, self._resync)
        every("housekeeping", 3600.0, self._housekeeping)

    def failing(self) -> list[str]:
        """Jobs whose last `FAILING_AFTER` runs failed."""
        return sorted(n for n, k in self._in_a_row.items() if k >= FAILING_AFTER)

    @property
    def running(self) -> int:
        """Job runs in progress."""
        return len(self._running)

    def every(self, name: str, seconds: float, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run `fn` every `seconds`; a run still going when the next is due makes it skip."""

        async def run() -> None:
            if self._leased is not None and name in ONCE_PER_CLUSTER and not self._leased(name):
                self.skipped[name] = self.skipped.get(name, 0) + 1
                return
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)
            try:
                await fn()
                self.runs[name] = self.runs.get(name, 0) + 1
                self._in_a_row.pop(name, None)
            except StorageUnavailable as exc:
                # The database away: counted like any failure (/healthz says so), logged
                # once per outage of this job rather than with a traceback every tick.
                self.failures[name] = self.failures.get(name, 0) + 1
                self._in_a_row[name] = self._in_a_row.get(name, 0) + 1
                if self._in_a_row[name] == 1:
                    log.warning("job.storage_unavailable", job=name, error=str(exc))
            except Exception:
                self.failures[name] = self.failures.get(name, 0) + 1
                self._in_a_row[name] = self._in_a_row.get(name, 0) + 1
                log.exception("job.failed", job=name)
            except asyncio.CancelledError:
                # Only stop()/shutdown() cancel runs: end quietly, the scheduler would log it
                # as a crash otherwise.
                log.info("job.cancelled", job=name)
            finally:
                if task is not None:
                    self._running.discard(task)

        self._defined[name] = (seconds, run)
        self._schedule(name, seconds, run)

    async def run_once(self, name: str) -> None:
        """One run of a defined job now, as the scheduler would start it (ops, tests)."""
        await self._defined[name][1]()

    def _schedule(self, name: str, seconds: float, run: Callable[[], Awaitable[None]]) -> None:
        # max_instances=1 and coalesce: a job never overlaps itself, missed runs merge into one.
        self.scheduler.add_job(
            run,
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
        )

    async def _resync(self) -> None:
        await self._core.flush_statuses(force=True)

    async def _housekeeping(self) -> None:
        pruned = await self._core.prune(self._clock() - self._prune_s)
        if pruned.outbox_rows:
            log.info("outbox.pruned", rows=pruned.outbox_rows)
        if pruned.ignored_statuses:
            log.info("status.ignored_pruned", rows=pruned.ignored_statuses)

    def start(self) -> None:
        """Start the scheduler; each job's first run is one interval from now (jobs defined
        while the gateway was being built count from its start, not from their definition)."""
        for name, (seconds, run) in self._defined.items():
            self._schedule(name, seconds, run)
        self.scheduler.start()

    def pause(self) -> None:
        if self.scheduler.running:  # idempotent: stopping twice must not raise
            self.scheduler.pause()

    async def stop(self, grace_s: float) -> int:
        """Start no new runs, let running ones finish within `grace_s`, cancel the rest and
        wait for them; returns how many were cancelled."""
        if self.scheduler.running:
            self.scheduler.pause()
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        left = list(self._running)
        for task in left:
            task.cancel(msg="gateway stopping")
        if left:
            log.warning("jobs.cancelled", count=len(left))
            await asyncio.gather(*left, return_exceptions=True)
        self.shutdown()
        await asyncio.sleep(0)  # AsyncIOScheduler.shutdown runs on the loop's next turn
        return len(left)

    def shutdown(self) -> None:
        """Stop the scheduler; runs still going are cancelled (they must not outlive the DB)."""
        for task in list(self._running):
            task.cancel(msg="gateway stopping")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
