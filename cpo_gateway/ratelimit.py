"""Failed logins limited per source address and per identity (sliding window).

A peer that keeps failing (a charger's password, an EMP's API key) is answered 429 before any
credential check, so guessing is slow and scrypt never becomes a way to burn the CPU.

A failure limit must never let a stranger lock out the rightful peer. LoginLimiter therefore
counts failures per (source, identity) pair: a stranger guessing a charger's password blocks
only himself, never the charger at its own address. Per source it counts the identities that
failed (a spray of many ids), not the failures: chargers behind one carrier NAT share an
address, and one of them with a wrong password must not lock out the others.
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

    def count(self, key: str) -> int:
        """Failures of `key` within the window."""
        times = self._recent(key)
        return 0 if times is None else len(times)

    def blocked(self, *keys: str) -> bool:
        return any((t := self._recent(k)) is not None and len(t) >= self._max for k in keys)

    def failed(self, *keys: str) -> None:
        now = self._clock()
        if len(self._failures) >= self._max_keys:  # bounded memory under a spray of sources
            for stale in list(self._failures)[: self._max_keys // 10]:
                del self._failures[stale]
        for key in keys:
            self._failures.setdefault(key, deque(maxlen=self._max)).append(now)


class LoginLimiter:
    """Failed logins per (source, identity) pair, and per source the identities it failed for
    (see the module docstring)."""

    def __init__(
        self,
        max_failures: int = 10,
        max_identities: int = 20,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._pairs = FailureLimiter(max_failures, window_s, clock, max_keys)
        self._sources = FailureLimiter(max_identities, window_s, clock, max_keys)

    @staticmethod
    def _pair(source: str, identity: str) -> str:
        return f"{source}\n{identity}"  # neither an address nor a charge point id holds \n

    def blocked(self, source: str, identity: str) -> bool:
        return self._pairs.blocked(self._pair(source, identity)) or self._sources.blocked(source)

    def failed(self, source: str, identity: str) -> None:
        pair = self._pair(source, identity)
        if self._pairs.count(pair) == 0:  # an identity new to this source's failures
            self._sources.failed(source)
        self._pairs.failed(pair)
