"""Tracked background tasks: nothing is fire-and-forget.

`spawn` keeps a reference, logs a failure the moment it happens, and `drain` waits for the
rest at shutdown before cancelling what is left.

`service` runs a long-lived loop (silence watcher, watchdog, gc pacing): one that ends before
the set stops supervising (`stop_supervising`, or `drain`), whether it failed, returned or was
cancelled by anything but the shutdown, is reported to `on_service_end` (the gateway stops and
exits 70 so systemd restarts a whole process, never leaving a half-alive one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from cpo_gateway import logs

log = logs.get(__name__)


class TaskSet:
    def __init__(
        self,
        name: str = "tasks",
        *,
        on_service_end: Callable[[str, BaseException | None], None] | None = None,
        transient: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.name = name
        # Errors of the moment (the database away): a task ended by one is logged, not
        # counted as a failure; whatever it was doing is done again by its periodic job.
        self._transient = transient
        self._tasks: set[asyncio.Task[Any]] = set()
        self._services: set[asyncio.Task[Any]] = set()
        self._supervising = True
        self._on_service_end = on_service_end
        self.failures = 0
        self.services_ended: list[str] = []

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def service(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Spawn a loop meant to run until the shutdown: its early end is reported."""
        task = self.spawn(coro, name=name)
        self._services.add(task)
        return task

    def retire(self, task: asyncio.Task[Any]) -> None:
        """Cancel a service on purpose (its owner closes): not reported as an early end."""
        self._services.discard(task)
        task.cancel()

    def stop_supervising(self) -> None:
        """The shutdown has begun: services ending from now on are expected."""
        self._supervising = False

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None and isinstance(exc, self._transient):
            log.warning("task.interrupted", task=task.get_name(), error=str(exc))
        elif exc is not None:
            self.failures += 1
            log.error("task.failed", task=task.get_name(), exc_info=exc)
        if task in self._services:
            self._services.discard(task)
            if self._supervising:
                self.services_ended.append(task.get_name())
                how = "failed" if exc else "cancelled" if task.cancelled() else "returned"
                log.error("task.service_ended", task=task.get_name(), how=how)
                if self._on_service_end is not None:
                    self._on_service_end(task.get_name(), exc)

    async def drain(self, grace_s: float) -> int:
        """Wait up to `grace_s` for running tasks, then cancel the rest; returns how many."""
        self.stop_supervising()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        left = list(self._tasks)
        for task in left:
            task.cancel(msg="gateway stopping")
        if left:
            log.warning("tasks.cancelled", set=self.name, count=len(left))
            await asyncio.gather(*left, return_exceptions=True)
        return len(left)
