"""How the gateway process runs: its event loop and when it collects cyclic garbage.

Both are tuned for thousands of long-lived charger connections, where CPython's defaults stop
the event loop for far longer than a charger should wait:

- Collection. CPython collects its oldest generation whenever the objects promoted into it
  since the last full pass reach a quarter of it. Every closed websocket leaves a cluster of
  cyclic garbage there (the library's connection, its protocol and the transport refer to each
  other), and a reconnect storm promotes a whole fleet of new connections, so a 5,000-charger
  storm ran some twenty full passes of 0.4-0.8 s each (a pass costs about 1 us per tracked
  object, some 130 per connected charger). The `Collector` freezes what startup built,
  leaves the young generations to CPython, and runs full passes itself once enough has been
  allocated since the last one: when the process is quiet, or at the latest after
  `max_interval_s` while it stays busy.
- Young generations. CPython starts a young collection when allocations minus deallocations
  pass a threshold; while a storm frees old connections as fast as it builds new ones that
  count hardly moves, the young generation grows to tens of thousands of objects and one
  pass stops the loop for 30-60 ms. With the collector installed, the gateway's event loop
  collects the youngest generation itself, at most every `young_interval_s` (before it
  polls, so never while it is idle), and the middle one every `_MIDDLE_EVERY`-th time.
- TLS buffers. asyncio gives every TLS connection a read buffer of
  `SSLProtocol.max_size` (256 KiB, zeroed, so resident at once), silent ones included:
  2,000 sockets that never finish a handshake held 500 MB. A TLS record is at most 16 KiB,
  so `new_event_loop` lowers it to `_TLS_READ_BUFFER` (32 KiB); a larger read takes two.
- Polling. `new_event_loop` gives asyncio a selector that reports at most `_MAX_EVENTS` ready
  sockets per poll (the rest stay ready and come in the next iteration), so a thousand
  sockets closing at once are handled over several short iterations, with timers and
  other chargers' messages served in between, instead of in one long one.

All of it leans on CPython internals (the selector's private `_selector`, SSLProtocol's
`max_size`, gc thresholds and
freezing, asyncio accepting up to `backlog` connections per wake-up): one switch turns it off,
`CPO_GATEWAY_RUNTIME_TUNING=0` in the environment (default on), and
tests/test_runtime_internals.py fails when an internal it relies on changes.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import gc
import os
import selectors
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cpo_gateway import logs

log = logs.get(__name__)
T = TypeVar("T")

TUNING_ENV = "CPO_GATEWAY_RUNTIME_TUNING"
_OFF = frozenset({"0", "false", "no", "off"})
_MAX_EVENTS = 16
_NEVER = 1 << 30  # a gen-1 collection count the oldest generation's trigger never reaches
_MIDDLE_EVERY = 4  # young passes per pass over the middle generation too
_TLS_READ_BUFFER = 32 * 1024  # two TLS records; asyncio's default is 256 KiB per connection


def _no_young_pass() -> None:
    pass


# What the event loop runs before each poll: the installed Collector's young pass, if any
# (collection is process-wide, like the Collector itself).
_before_poll: Callable[[], None] = _no_young_pass


class _CappedPoll:
    """An epoll object whose poll() returns at most `_MAX_EVENTS` events. Level-triggered
    epoll keeps the others ready: the next poll, after this batch's callbacks, returns them."""

    def __init__(self, epoll: Any) -> None:
        self._epoll = epoll

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        _before_poll()
        cap = _MAX_EVENTS if maxevents <= 0 else min(maxevents, _MAX_EVENTS)
        events: list[tuple[int, int]] = self._epoll.poll(timeout, cap)
        return events

    def __getattr__(self, name: str) -> Any:  # register, modify, unregister, fileno, close
        return getattr(self._epoll, name)


class _CappedEpollSelector(selectors.EpollSelector):
    def __init__(self) -> None:
        super().__init__()
        self._selector = _CappedPoll(self._selector)

    _selector: Any


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The gateway's event loop: asyncio's, with a capped epoll selector where there is one,
    and TLS read buffers of `_TLS_READ_BUFFER`."""
    small_tls_buffers()
    if hasattr(selectors, "EpollSelector"):
        return asyncio.SelectorEventLoop(_CappedEpollSelector())
    return asyncio.new_event_loop()


def small_tls_buffers() -> None:
    """Lower asyncio's per-connection TLS read buffer (see the module docstring)."""
    protocol: Any = asyncio.sslproto.SSLProtocol
    if getattr(protocol, "max_size", 0) > _TLS_READ_BUFFER:
        protocol.max_size = _TLS_READ_BUFFER


def tuning_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the process tuning above is on: unless `CPO_GATEWAY_RUNTIME_TUNING` is one of
    0, false, no, off (the escape hatch on a Python whose internals moved)."""
    value = (os.environ if env is None else env).get(TUNING_ENV, "1")
    return value.strip().lower() not in _OFF


def run(main: Coroutine[Any, Any, T], *, tuned: bool = True) -> T:
    """asyncio.run with the gateway's event loop (asyncio's own when not `tuned`)."""
    factory = new_event_loop if tuned else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


@dataclass
class CollectorStats:
    full_collections: int = 0
    young_collections: int = 0
    last_pause_ms: float = 0.0
    longest_pause_ms: float = 0.0
    last_collected: int = 0


class Collector:
    """Full garbage collections when the process is quiet, or at the latest every
    `max_interval_s` while there is something to collect (see the module docstring)."""

    def __init__(
        self,
        *,
        check_s: float = 5.0,
        quiet_cpu_share: float = 0.25,
        min_growth: int = 100_000,
        max_interval_s: float = 600.0,
        young_interval_s: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.check_s = check_s
        self.quiet_cpu_share = quiet_cpu_share
        self.min_growth = min_growth
        self.max_interval_s = max_interval_s
        self.young_interval_s = young_interval_s
        self._clock = clock
        self._cpu_clock = cpu_clock
        self.stats = CollectorStats()
        self._saved: tuple[int, int, int] | None = None
        self._after_last = 0  # allocated blocks right after the last full collection
        self._last_at = 0.0
        self._mark = (0.0, 0.0)  # (wall, cpu) at the last check
        self._young_at = 0.0

    def install(self) -> None:
        """Collect and freeze what exists now (startup: modules, config, catalogue), then
        turn off CPython's own full collections and pace the young ones."""
        global _before_poll
        if self._saved is not None:
            return
        gc.collect()
        gc.freeze()
        self._saved = gc.get_threshold()
        young0, young1, _ = self._saved
        gc.set_threshold(young0, young1, _NEVER)
        self._passed()
        _before_poll = self.young_pass
        log.info("gc.paced", frozen=gc.get_freeze_count(), check_s=self.check_s)

    def uninstall(self) -> None:
        global _before_poll
        if self._saved is None:
            return
        if _before_poll == self.young_pass:
            _before_poll = _no_young_pass
        gc.set_threshold(*self._saved)
        self._saved = None
        gc.unfreeze()

    def young_pass(self) -> None:
        """Collect the young generation if `young_interval_s` has passed since the last time
        (the event loop calls this before each poll)."""
        now = self._clock()
        if now - self._young_at < self.young_interval_s:
            return
        self._young_at = now
        self.stats.young_collections += 1
        gc.collect(1 if self.stats.young_collections % _MIDDLE_EVERY == 0 else 0)

    def due(self, now: float, cpu_share: float, heap_blocks: int) -> bool:
        """Whether a full collection should run now (a pure decision, for the tests).

        Growth is measured in allocated blocks (cheap to read, unlike counting the old
        generation, which walks it): garbage cycles left by closed connections grow it."""
        if heap_blocks - self._after_last < self.min_growth:
            return False  # too little allocated since the last pass to be worth one
        return cpu_share < self.quiet_cpu_share or now - self._last_at >= self.max_interval_s

    def check(self) -> bool:
        """Look at the process now; collect if due. Returns whether it collected."""
        now, cpu = self._clock(), self._cpu_clock()
        wall0, cpu0 = self._mark
        self._mark = (now, cpu)
        share = (cpu - cpu0) / (now - wall0) if now > wall0 else 1.0
        if not self.due(now, share, sys.getallocatedblocks()):
            return False
        self.collect()
        return True

    def collect(self) -> None:
        started = time.perf_counter()
        collected = gc.collect()
        pause_ms = round((time.perf_counter() - started) * 1000, 1)
        self._passed()
        s = self.stats
        s.full_collections += 1
        s.last_pause_ms, s.last_collected = pause_ms, collected
        s.longest_pause_ms = max(s.longest_pause_ms, pause_ms)
        log.info("gc.full_collection", ms=pause_ms, collected=collected, kept=self._after_last)

    def _passed(self) -> None:
        """A full pass just ran: growth and the busy share count from now (the pass itself
        is not load)."""
        self._after_last = sys.getallocatedblocks()
        self._last_at = self._clock()
        self._mark = (self._last_at, self._cpu_clock())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            self.check()
