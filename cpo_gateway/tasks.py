"""Tracked background tasks: nothing is fire-and-forget.

`spawn` keeps a reference, logs a failure the moment it happens, and `drain` waits for the
rest at shutdown before cancelling what is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from cpo_gateway import logs

log = logs.get(__name__)


class TaskSet:
    def __init__(self, name: str = "tasks") -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failures = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.failures += 1
            log.error("task.failed", task=task.get_name(), exc_info=exc)

    async def drain(self, grace_s: float) -> int:
        """Wait up to `grace_s` for running tasks, then cancel the rest; returns how many."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        left = list(self._tasks)
        for task in left:
            task.cancel(msg="gateway stopping")
        if left:
            log.warning("tasks.cancelled", set=self.name, count=len(left))
            await asyncio.gather(*left, return_exceptions=True)
        return len(left)
