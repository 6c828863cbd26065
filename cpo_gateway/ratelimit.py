"""Failed logins limited per source address and per identity (sliding window).

A peer that keeps failing (a charger's password, an EMP's API key) is answered 429 before any
credential check, so guessing is slow and scrypt never becomes a way to burn the CPU.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._max = max_failures
        self._window = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        cutoff = self._clock() - self._window
        while times and times[0] < cutoff:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def blocked(self, *keys: str) -> bool:
        return any((t := self._recent(k)) is not None and len(t) >= self._max for k in keys)

    def failed(self, *keys: str) -> None:
        now = self._clock()
        if len(self._failures) >= self._max_keys:  # bounded memory under a spray of sources
            for stale in list(self._failures)[: self._max_keys // 10]:
                del self._failures[stale]
        for key in keys:
            self._failures.setdefault(key, deque(maxlen=self._max)).append(now)
