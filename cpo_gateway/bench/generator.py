"""The load generator: N simulated chargers in one or more worker processes, closed loop.

Each worker process owns a slice of the chargers, connects them (BootNotification, then
StatusNotification), reports "ready", waits for "go" with a shared wall-clock start time, plays
the scenario's behaviour until its end and sends back what it measured. Processes rather
than one event loop so the generator is never the bottleneck of a 2-core box.

Behaviours: "mixed" (the realistic mix, closed loop), "idle" (heartbeats only), "burst" (one
MeterValues per charger within a spread), "storm" (every charger drops and reconnects within a
spread), "authorize" (paced Authorize of whitelisted cards), "mixed201" (the 2.0.1 mix:
Heartbeat, Authorize, StatusNotification, TransactionEvent Updated with meter values, in a
transaction opened during setup), "failover" (heartbeats in a transaction opened during
setup; a charger whose connection is lost reconnects after a random delay within the spread,
without booting, as a charger does when its central system goes away; at the end every
charger stops its transaction, reconnecting first if it must). `protocol` picks the 1.6 or the
2.0.1 load charger.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

from cpo_gateway.bench.charger import CallFailed, LoadCharger, Payload
from cpo_gateway.bench.charger201 import LoadCharger201
from cpo_gateway.bench.wire import HandshakeError

BEHAVIOURS = ("mixed", "idle", "burst", "storm", "authorize", "mixed201", "failover")
CHARGERS: dict[str, type[LoadCharger]] = {"1.6": LoadCharger, "2.0.1": LoadCharger201}


@dataclass(frozen=True)
class LoadSpec:
    """What one worker does. `charger_ids` and `cards` are its own slice."""

    behaviour: str
    host: str
    port: int
    path: str
    charger_ids: tuple[str, ...]
    cards: tuple[str, ...] = ()
    seconds: float = 10.0
    spread_s: float = 1.0  # burst / storm: the window the chargers are spread over
    heartbeat_s: float = 10.0  # idle: each charger's heartbeat period
    rate: float = 0.0  # authorize: calls per second of this worker
    connect_concurrency: int = 64
    start_transaction: bool = False  # burst: open a transaction during setup
    call_timeout_s: float = 60.0
    protocol: str = "1.6"  # "2.0.1": the chargers are LoadCharger201 stations


@dataclass
class Recorder:
    """Latencies (seconds) per action for calls sent inside [start, end] (wall clock)."""

    start: float = 0.0
    end: float = float("inf")
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    back_at: list[float] = field(default_factory=list)
    dropped_at: list[float] = field(default_factory=list)  # failover: wall clock of each loss
    stopped: int = 0  # failover: transactions whose StopTransaction was answered

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def timed(self, action: str, call: Awaitable[Payload]) -> Payload | None:
        sent_wall = time.time()
        started = time.perf_counter()
        try:
            reply = await call
        except CallFailed as exc:
            self.error(f"{action}: {str(exc)[:60]}")
            return None
        except (ConnectionError, OSError):
            self.error(f"{action}: connection lost")
            return None
        if self.start <= sent_wall <= self.end:
            self.latencies.setdefault(action, []).append(time.perf_counter() - started)
        return reply


# -- behaviours ---------------------------------------------------------------------------------

Behaviour = Callable[[LoadCharger, int, LoadSpec, Recorder], Awaitable[None]]


async def _mixed(ch: LoadCharger, index: int, spec: LoadSpec, rec: Recorder) -> None:
    card = spec.cards[index % len(spec.cards)] if spec.cards else "BENCH0001"
    while time.time() < rec.end and ch.connected:
        await rec.timed("Heartbeat", ch.heartbeat())
        await rec.timed("Authorize", ch.authorize(card))
        await rec.timed("StatusNotification", ch.status("Preparing"))
        await rec.timed("StartTransaction", ch.start_transaction(card))
        await rec.timed("StatusNotification", ch.status("Charging"))
        for _ in range(4):
            await rec.timed("MeterValues", ch.meter_values())
        await rec.timed("Heartbeat", ch.heartbeat())
        await rec.timed("StopTransaction", ch.stop_transaction())
        await rec.timed("StatusNotification", ch.status("Finishing"))
        await rec.timed("StatusNotification", ch.status("Available"))


async def _mixed201(ch: LoadCharger, index: int, spec: LoadSpec, rec: Recorder) -> None:
    card = spec.cards[index % len(spec.cards)] if spec.cards else "BENCH0001"
    while time.time() < rec.end and ch.connected:
        await rec.timed("Heartbeat", ch.heartbeat())
        await rec.timed("Authorize", ch.authorize(card))
        await rec.timed("StatusNotification", ch.status("Charging"))
        for _ in range(4):
            await rec.timed("TransactionEvent", ch.meter_values())
        await rec.timed("Heartbeat", ch.heartbeat())
        await rec.timed("StatusNotification", ch.status("Charging"))


async def _idle(ch: LoadCharger, index: int, spec: LoadSpec, rec: Recorder) -> None:
    await asyncio.sleep(random.uniform(0, spec.heartbeat_s))
    while time.time() < rec.end and ch.connected:
        await rec.timed("Heartbeat", ch.heartbeat())
        await asyncio.sleep(spec.heartbeat_s)


async def _burst(ch: LoadCharger, index: int, spec: LoadSpec, rec: Recorder) -> None:
    await asyncio.sleep(random.uniform(0, spec.spread_s))
    await rec.timed("MeterValues", ch.meter_values())


async def _storm(ch: LoadCharger, index: int, spec: LoadSpec, rec: Recorder) -> None:
    ch.abort()
    await ch.wait_closed()
    await asyncio.sleep(random.uniform(0, spec.spread_s))
    deadline = rec.start + spec.seconds
    while time.time() < deadline:
        try:
            await ch.connect(timeout=10.0)
            boot = await rec.timed("BootNotification", ch.boot())
            if boot is None or boot.get("status") != "Accepted":
                raise ConnectionError("boot not accepted")
            if await rec.timed("StatusNotification", ch.status("Available")) is None:
                raise ConnectionError("status not answered")
        except (OSError, TimeoutError) as exc:
            rec.error(f"reconnect: {type(exc).__name__}")
            ch.abort()
            await asyncio.sleep(1.0)
            continue
        rec.back_at.append(time.time() - rec.start)
        return


async def _authorize(ch: LoadCharger, index: int, spec: LoadSpec, rec: Recorder) -> None:
    per_charger = spec.rate / max(1, len(spec.charger_ids))
    if per_charger <= 0:
        return
    period = 1.0 / per_charger
    card = spec.cards[index % len(spec.cards)] if spec.cards else "BENCH0001"
    due = rec.start + random.uniform(0, period)
    while due < rec.end and ch.connected:
        await asyncio.sleep(max(0.0, due - time.time()))
        await rec.timed("Authorize", ch.authorize(card))
        due += period


async def _reconnect(ch: LoadCharger, spec: LoadSpec, rec: Recorder, deadline: float) -> bool:
    """Back after a lost connection: connect (no boot), Heartbeat, the connector's status."""
    await asyncio.sleep(random.uniform(0, spec.spread_s))
    while time.time() < deadline:
        try:
            await ch.connect(timeout=10.0)
            if await rec.timed("Heartbeat", ch.heartbeat()) is None:
                raise ConnectionError("heartbeat not answered")
            status = "Charging" if ch.tx_id is not None else "Available"
            if await rec.timed("StatusNotification", ch.status(status)) is None:
                raise ConnectionError("status not answered")
        except (OSError, TimeoutError, HandshakeError) as exc:
            # HAProxy answers 502/503 while it has no live node for the charger: retry.
            rec.error(f"reconnect: {str(exc)[:40] or type(exc).__name__}")
            ch.abort()
            await asyncio.sleep(1.0)
            continue
        rec.back_at.append(time.time())
        return True
    return False


async def _failover(ch: LoadCharger, index: int, spec: LoadSpec, rec: Recorder) -> None:
    await asyncio.sleep(random.uniform(0, spec.heartbeat_s))
    stop_by = rec.end + spec.call_timeout_s
    while time.time() < rec.end:
        if not ch.connected:
            rec.dropped_at.append(time.time())
            await _reconnect(ch, spec, rec, stop_by)
            continue
        await rec.timed("Heartbeat", ch.heartbeat())
        await ch.closed_within(min(spec.heartbeat_s, max(0.0, rec.end - time.time())))
    for _ in range(3):  # the transaction opened during setup ends: its CDR is owed
        if ch.tx_id is None or (not ch.connected and not await _reconnect(ch, spec, rec, stop_by)):
            break
        try:
            await ch.stop_transaction()
        except (CallFailed, ConnectionError, OSError):
            continue
        rec.stopped += 1
        return


BEHAVIOUR: dict[str, Behaviour] = {
    "mixed": _mixed,
    "idle": _idle,
    "burst": _burst,
    "storm": _storm,
    "authorize": _authorize,
    "mixed201": _mixed201,
    "failover": _failover,
}


# -- one worker process ----------------------------------------------------------------------


async def _setup(ch: LoadCharger, index: int, spec: LoadSpec, limit: asyncio.Semaphore) -> str:
    """Connect, boot and report Available; "" when done, else what went wrong."""
    try:
        async with limit:
            await ch.connect(timeout=spec.call_timeout_s)
        boot = await ch.boot(spec.call_timeout_s)
        if boot.get("status") != "Accepted":
            return f"boot {boot.get('status')}"
        await ch.status("Available")
        if spec.start_transaction:
            card = spec.cards[index % len(spec.cards)] if spec.cards else "BENCH0001"
            await ch.start_transaction(card)
            await ch.status("Charging")
    except (OSError, TimeoutError, CallFailed) as exc:
        return f"setup: {type(exc).__name__}"
    return ""


async def run_worker(spec: LoadSpec, pipe: Connection) -> None:
    kind = CHARGERS[spec.protocol]
    chargers = [kind(cp, spec.host, spec.port, spec.path) for cp in spec.charger_ids]
    limit = asyncio.Semaphore(spec.connect_concurrency)
    setup_started = time.perf_counter()
    problems = await asyncio.gather(*(_setup(c, i, spec, limit) for i, c in enumerate(chargers)))
    failed: dict[str, int] = {}
    for p in problems:
        if p:
            failed[p] = failed.get(p, 0) + 1
    setup_s = time.perf_counter() - setup_started
    pipe.send(
        (
            "ready",
            {
                "connected": sum(1 for c in chargers if c.connected),
                "failed": failed,
                "setup_s": setup_s,
            },
        )
    )
    message = await asyncio.to_thread(pipe.recv)
    start, end = float(message[1]), float(message[2])
    rec = Recorder(start=start, end=end)
    cpu_before = time.process_time()
    await asyncio.sleep(max(0.0, start - time.time()))
    behaviour = BEHAVIOUR[spec.behaviour]
    await asyncio.gather(*(behaviour(c, i, spec, rec) for i, c in enumerate(chargers)))
    result: dict[str, Any] = {
        "latencies": rec.latencies,
        "errors": rec.errors,
        "back_at": rec.back_at,
        "dropped_at": rec.dropped_at,
        "stopped": rec.stopped,
        "cpu_s": time.process_time() - cpu_before,
        "connected_at_end": sum(1 for c in chargers if c.connected),
    }
    pipe.send(("done", result))
    for c in chargers:
        c.close()
    await asyncio.sleep(0.2)


def worker_main(spec: LoadSpec, pipe: Connection) -> None:
    """The entry point of a worker process."""
    asyncio.run(run_worker(spec, pipe))


# -- the orchestrating side ------------------------------------------------------------------


@dataclass
class LoadResult:
    ready: list[dict[str, Any]]
    latencies: dict[str, list[float]]
    errors: dict[str, int]
    back_at: list[float]
    cpu_s: float
    connected_at_end: int
    dropped_at: list[float] = field(default_factory=list)
    stopped: int = 0

    @property
    def answered(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def all_latencies(self) -> list[float]:
        return [x for v in self.latencies.values() for x in v]


class LoadRun:
    """Workers spawned for one scenario: `await start()`, `await go(...)`, `await finish()`."""

    def __init__(self, spec: LoadSpec, workers: int, cards: Sequence[str] = ()) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        ids = spec.charger_ids
        workers = max(1, min(workers, len(ids)))
        for w in range(workers):
            part = replace(
                spec,
                charger_ids=ids[w::workers],
                cards=tuple(cards[w::workers]) or spec.cards,
                rate=spec.rate / workers,
            )
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(part, child), daemon=True)
            self._pipes.append(parent)
            self._procs.append(proc)
        self.ready: list[dict[str, Any]] = []

    async def start(self, timeout_s: float = 300.0) -> list[dict[str, Any]]:
        for proc in self._procs:
            proc.start()
        self.ready = [await self._recv(p, "ready", timeout_s) for p in self._pipes]
        return self.ready

    @property
    def connected(self) -> int:
        return sum(int(r["connected"]) for r in self.ready)

    def go(self, start: float, end: float) -> None:
        for p in self._pipes:
            p.send(("go", start, end))

    async def finish(self, timeout_s: float = 600.0) -> LoadResult:
        results = [await self._recv(p, "done", timeout_s) for p in self._pipes]
        self.kill()
        merged: dict[str, list[float]] = {}
        errors: dict[str, int] = {}
        for r in results:
            for action, values in r["latencies"].items():
                merged.setdefault(action, []).extend(values)
            for kind, n in r["errors"].items():
                errors[kind] = errors.get(kind, 0) + n
        return LoadResult(
            ready=self.ready,
            latencies=merged,
            errors=errors,
            back_at=[x for r in results for x in r["back_at"]],
            cpu_s=sum(float(r["cpu_s"]) for r in results),
            connected_at_end=sum(int(r["connected_at_end"]) for r in results),
            dropped_at=[x for r in results for x in r["dropped_at"]],
            stopped=sum(int(r["stopped"]) for r in results),
        )

    def kill(self) -> None:
        """Stop every worker that is still running (after finish(): they are exiting)."""
        for proc in self._procs:
            if proc.pid is None:
                continue
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            proc.close()
        self._procs = []
        for pipe in self._pipes:
            pipe.close()
        self._pipes = []

    @staticmethod
    async def _recv(pipe: Connection, kind: str, timeout_s: float) -> dict[str, Any]:
        ready = await asyncio.to_thread(pipe.poll, timeout_s)
        if not ready:
            raise TimeoutError(f"load worker sent no {kind!r} within {timeout_s} s")
        message = pipe.recv()
        if message[0] != kind:
            raise RuntimeError(f"load worker sent {message[0]!r}, expected {kind!r}")
        result: dict[str, Any] = message[1]
        return result
