"""Scheduled work (APScheduler 3): outbox delivery, status flush and resync, station sync,
expiry of pending remote starts, local-list retries, housekeeping."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from cpo_gateway import logs
from cpo_gateway.bridge.core import Core

log = logs.get(__name__)


class Jobs:
    def __init__(
        self,
        core: Core,
        *,
        outbox_tick_s: float,
        status_resync_h: float,
        prune_after_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._core = core
        self._clock = clock
        self._prune_s = prune_after_days * 86400.0
        self.scheduler = AsyncIOScheduler()
        self.runs: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        every = self._every
        every("outbox", outbox_tick_s, core.delivery.tick)
        every("status-flush", 0.5, core.status.flush)
        every("expire-starts", 5.0, core.remote.expire_pending)
        every("local-list", 60.0, core.local_list.push_all)
        every("status-resync", status_resync_h * 3600.0, self._resync)
        every("housekeeping", 3600.0, self._housekeeping)

    def _every(self, name: str, seconds: float, fn: Callable[[], Awaitable[Any]]) -> None:
        async def run() -> None:
            try:
                await fn()
                self.runs[name] = self.runs.get(name, 0) + 1
            except Exception:
                self.failures[name] = self.failures.get(name, 0) + 1
                log.exception("job.failed", job=name)

        # max_instances=1 and coalesce: a job never overlaps itself, missed runs merge into one.
        self.scheduler.add_job(
            run, "interval", seconds=seconds, id=name, max_instances=1, coalesce=True,
            misfire_grace_time=None,
        )  # fmt: skip

    async def _resync(self) -> None:
        await self._core.status.flush(force=True)

    async def _housekeeping(self) -> None:
        pruned = await self._core.store.prune_delivered(self._clock() - self._prune_s)
        if pruned:
            log.info("outbox.pruned", rows=pruned)

    def start(self) -> None:
        self.scheduler.start()

    def pause(self) -> None:
        self.scheduler.pause()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
