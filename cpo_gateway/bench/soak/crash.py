"""The crash scenario: simulated chargers run card sessions while the gateway daemon is killed
with SIGKILL at random moments and restarted on the same ports and database.

Invariant: every session a charger saw acknowledged ends as exactly one CDR at the sandbox EMP
(one session-id per charger session, none missing), and no outbox row is left undelivered.
Re-deliveries of the same session-id are allowed (at-least-once) and counted. Shared by
tests/test_reliability_crash.py (short) and `scripts/soak crash` (long).

`nodes` > 0 runs the same sessions against a cluster (soak/crash_cluster.py): that many nodes
on one PostgreSQL behind HAProxy, the chargers connected through HAProxy, and one node at a
time killed at random moments and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from websockets.exceptions import WebSocketException

from cpo_gateway.bench.soak.crash_cluster import ClusterTarget, pg_outbox_left
from cpo_gateway.bench.soak.gateway import (
    INBOUND_KEY,
    OUTBOUND_KEY,
    PARTNER,
    GatewayProcess,
    charger_id,
    evse_id,
    free_port,
    write_config,
)
from cpo_gateway.config_storage import STORAGE_URL_ENV, is_postgres_url
from cpo_gateway.sim.charger.simulator import SimCharger, SimChargerError
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp

CARDS = [f"{0x0A0B0C00 + i:08X}" for i in range(8)]
# Recent and whole minutes: a CDR from long ago is held for review (bridge/cdr.review).
_BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
_DRAIN_ROUNDS = 600
_DRAIN_PAUSE_S = 0.1


@dataclass(frozen=True, slots=True)
class Planned:
    """One charger session: unique start time and energy, so its CDR can be recognised."""

    index: int
    charger: int
    connector: int
    card: str
    start: datetime
    stop: datetime
    meter_start: int
    meter_stop: int

    @property
    def key(self) -> tuple[str, datetime]:
        return evse_id(self.charger, self.connector), self.start

    @property
    def energy_kwh(self) -> float:
        return round((self.meter_stop - self.meter_start) / 1000, 3)


@dataclass
class CrashReport:
    sessions: int
    chargers: int
    kills: int = 0
    acknowledged: int = 0
    cdrs: int = 0
    missing: list[int] = field(default_factory=list)
    split: list[int] = field(default_factory=list)  # sessions that became several session-ids
    unexpected: int = 0  # CDRs matching no charger session
    wrong_energy: list[int] = field(default_factory=list)
    duplicates_delivered: int = 0
    dropped_by_chargers: int = 0
    still_queued: int = 0
    outbox_left: int = 0  # outbox rows not delivered at the end (pending or dead)
    nodes: int = 1
    exit_code: int | None = None
    seconds: float = 0.0
    drain_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.missing
            and not self.split
            and not self.unexpected
            and not self.wrong_energy
            and self.dropped_by_chargers == 0
            and self.still_queued == 0
            and self.outbox_left == 0
            and self.acknowledged == self.sessions
            and self.exit_code == 0
        )

    def lines(self) -> list[str]:
        return [
            f"crash: nodes={self.nodes} sessions={self.sessions} chargers={self.chargers} "
            f"kills={self.kills}",
            f"crash: acknowledged={self.acknowledged} cdrs={self.cdrs} "
            f"missing={len(self.missing)} split={len(self.split)} unexpected={self.unexpected} "
            f"wrong_energy={len(self.wrong_energy)}",
            f"crash: duplicates_delivered={self.duplicates_delivered} "
            f"dropped_by_chargers={self.dropped_by_chargers} still_queued={self.still_queued} "
            f"outbox_left={self.outbox_left}",
            f"crash: final_exit_code={self.exit_code} total_s={self.seconds:.1f} "
            f"drain_after_last_session_s={self.drain_seconds:.1f} ok={self.ok}",
        ]


def plan(sessions: int, chargers: int) -> list[Planned]:
    out = []
    for i in range(sessions):
        start = _BASE + timedelta(seconds=60 * i)
        meter_start = 100_000 + i * 10_000
        out.append(
            Planned(
                index=i,
                charger=1 + i % chargers,
                connector=1 + (i // chargers) % 2,
                card=CARDS[i % len(CARDS)],
                start=start,
                stop=start + timedelta(seconds=45),
                meter_start=meter_start,
                meter_stop=meter_start + 100 + i % 900,  # < 1 kWh in 45 s
            )
        )
    return out


async def try_connect(cp: SimCharger) -> bool:
    """One reconnect attempt without reboot (the queue is replayed); False if refused."""
    if cp.connected:
        return True
    try:
        await cp.connect(boot=False)
    except (OSError, TimeoutError, WebSocketException, SimChargerError):
        return False
    return cp.connected


async def drive(
    cp: SimCharger, sessions: list[Planned], rng: random.Random, pause_s: float
) -> None:
    for s in sessions:
        # Like traffic on a real site: a session begins whether or not the link is up.
        for _ in range(5):
            if await try_connect(cp):
                break
            await asyncio.sleep(0.1)
        tx = await cp.start_transaction(s.connector, s.card, s.meter_start, timestamp=s.start)
        await asyncio.sleep(rng.uniform(0, pause_s))
        await try_connect(cp)
        middle = s.start + timedelta(seconds=20)
        await cp.meter_values(s.connector, tx, (s.meter_start + s.meter_stop) // 2, middle)
        await asyncio.sleep(rng.uniform(0, pause_s))
        await try_connect(cp)
        await cp.stop_transaction(tx, s.meter_stop, timestamp=s.stop)


async def drain(cp: SimCharger) -> None:
    for _ in range(_DRAIN_ROUNDS):
        if cp.pending == 0:
            return
        if await try_connect(cp):
            await cp.flush()
        if cp.pending:
            await asyncio.sleep(_DRAIN_PAUSE_S)


class Target(Protocol):
    """What the scenario runs against: one gateway process, or a cluster behind HAProxy."""

    @property
    def charger_url(self) -> str: ...
    @property
    def oioi_url(self) -> str: ...
    @property
    def kills(self) -> int: ...
    async def crash(self, rng: random.Random) -> None:
        """SIGKILL (one node of) the gateway, and start it again."""

    async def ensure_running(self) -> None: ...
    async def outbox_left(self) -> int: ...
    async def terminate(self) -> int:
        """SIGTERM every process; 0 when all exited 0, else the first other exit code."""


class SingleNode:
    """One gateway process on SQLite, killed and restarted on the same ports and database."""

    def __init__(self, workdir: Path, emp_url: str, chargers: int) -> None:
        ocpp_port, oioi_port = free_port(), free_port()
        config = write_config(
            workdir, emp_url=emp_url, chargers=chargers, ocpp_port=ocpp_port, oioi_port=oioi_port
        )
        self._db = workdir / "state" / "gateway.db"
        self._gateway = GatewayProcess(config, ocpp_port, oioi_port, workdir / "gateway.log")
        self.charger_url = f"ws://127.0.0.1:{ocpp_port}/ocpp"
        self.oioi_url = f"http://127.0.0.1:{oioi_port}/api/v4/request"

    @property
    def kills(self) -> int:
        return self._gateway.kills

    async def start(self) -> None:
        await self._gateway.start()

    async def crash(self, rng: random.Random) -> None:
        await self._gateway.kill()
        await asyncio.sleep(rng.uniform(0, 0.3))  # down for a moment: connects are refused
        await self._gateway.start()

    async def ensure_running(self) -> None:
        if not self._gateway.running:
            await self._gateway.start()

    async def outbox_left(self) -> int:
        url = os.environ.get(STORAGE_URL_ENV, "")  # the gateway child stores where it says
        if is_postgres_url(url):
            return await pg_outbox_left(url)

        def count() -> int:
            with contextlib.closing(sqlite3.connect(self._db)) as db:
                row = db.execute("SELECT count(*) FROM outbox WHERE state <> 'delivered'")
                return int(row.fetchone()[0])

        return await asyncio.to_thread(count)

    async def terminate(self) -> int:
        return await self._gateway.terminate() if self._gateway.running else -9


async def _killer(
    target: Target,
    rng: random.Random,
    every_s: tuple[float, float],
    stop: asyncio.Event,
    min_kills: int,
) -> None:
    """Crash the target at random moments until `stop`, and at least `min_kills` times: on a
    slow machine the chargers may finish their sessions (offline, queued) while the gateway
    is still starting again, and the kills still owed then hit the replay and the
    deliveries that follow."""
    while not (stop.is_set() and target.kills >= min_kills):
        pause = rng.uniform(*every_s)
        if stop.is_set():
            await asyncio.sleep(pause)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await stop.wait()
            if stop.is_set() and target.kills >= min_kills:
                return
        await target.crash(rng)


async def _outbox_settled(target: Target, rounds: int = 100) -> int:
    """Rows still undelivered once the outbox has had a few seconds to empty (0 = settled)."""
    left = await target.outbox_left()
    for _ in range(rounds):
        if left == 0:
            break
        await asyncio.sleep(0.2)
        left = await target.outbox_left()
    return left


def cdr_key(cdr: dict[str, object]) -> tuple[str, datetime] | None:
    interval = cdr.get("session-interval")
    start = interval.get("start") if isinstance(interval, dict) else None
    try:
        return str(cdr.get("connector-id")), datetime.fromisoformat(str(start))
    except ValueError:
        return None


def check(report: CrashReport, planned: list[Planned], emp: SandboxEmp) -> None:
    by_key = {p.key: p for p in planned}
    ids: dict[int, set[str]] = {}
    for session_id, cdr in emp.cdrs.items():
        key = cdr_key(cdr)
        found = by_key.get(key) if key is not None else None
        if found is None:
            report.unexpected += 1
            continue
        ids.setdefault(found.index, set()).add(session_id)
        if cdr.get("energy-consumed") != found.energy_kwh:
            report.wrong_energy.append(found.index)
    report.cdrs = len(emp.cdrs)
    report.missing = [p.index for p in planned if p.index not in ids]
    report.split = sorted(i for i, s in ids.items() if len(s) > 1)
    report.duplicates_delivered = emp.duplicates


async def run_crash(
    workdir: Path,
    *,
    sessions: int = 50,
    chargers: int = 10,
    seed: int = 1,
    kill_every_s: tuple[float, float] = (0.3, 1.5),
    min_kills: int = 2,
    pause_s: float = 1.0,
    time_limit_s: float = 600.0,
    progress: bool = False,
    nodes: int = 0,
) -> CrashReport:
    """Run the scenario in `workdir` (config, database, gateway.log); the report says all.
    `nodes` > 0: against that many cluster nodes behind HAProxy (soak/crash_cluster.py)."""
    async with SandboxEmp(api_key=OUTBOUND_KEY) as emp:
        if nodes:
            async with ClusterTarget(workdir, emp.url, chargers, nodes) as cluster:
                return await _run(cluster, emp, sessions, chargers, seed, kill_every_s,
                                  min_kills, pause_s, time_limit_s, progress, nodes)  # fmt: skip
        single = SingleNode(workdir, emp.url, chargers)
        await single.start()
        return await _run(single, emp, sessions, chargers, seed, kill_every_s, min_kills,
                          pause_s, time_limit_s, progress, 1)  # fmt: skip


async def _run(
    target: Target,
    emp: SandboxEmp,
    sessions: int,
    chargers: int,
    seed: int,
    kill_every_s: tuple[float, float],
    min_kills: int,
    pause_s: float,
    time_limit_s: float,
    progress: bool,
    nodes: int,
) -> CrashReport:
    rng = random.Random(seed)
    report = CrashReport(sessions=sessions, chargers=chargers, nodes=nodes)
    planned = plan(sessions, chargers)
    started = time.monotonic()
    async with EmpClient(target.oioi_url, INBOUND_KEY) as c:
        status, body = await c.rfid_post(PARTNER, CARDS)
        if status != 200:
            raise RuntimeError(f"rfid-post refused: {status} {body}")
    cps = [
        SimCharger(charger_id(i), target.charger_url, call_timeout=5)
        for i in range(1, chargers + 1)
    ]
    mine = [[p for p in planned if p.charger == i] for i in range(1, chargers + 1)]
    stop_killing = asyncio.Event()
    try:
        async with asyncio.timeout(time_limit_s):
            for cp in cps:
                await cp.connect()
            killer = asyncio.create_task(
                _killer(target, rng, kill_every_s, stop_killing, min_kills), name="soak-killer"
            )
            await asyncio.gather(
                *(
                    drive(cp, mine[i], random.Random(rng.random()), pause_s)
                    for i, cp in enumerate(cps)
                )
            )
            stop_killing.set()
            await killer
            drain_from = time.monotonic()
            await target.ensure_running()
            await asyncio.gather(*(drain(cp) for cp in cps))
            keys = {p.key for p in planned}

            def all_cdrs() -> bool:
                return keys <= {cdr_key(c) for c in emp.cdrs.values()}

            with contextlib.suppress(TimeoutError):  # the report names what is missing
                await emp.wait_for(all_cdrs, timeout=120)
            report.drain_seconds = time.monotonic() - drain_from
            report.outbox_left = await _outbox_settled(target)
    finally:
        stop_killing.set()
        for i, cp in enumerate(cps):
            report.still_queued += cp.pending
            report.dropped_by_chargers += len(cp.dropped)
            unanswered = cp.pending_actions + [m.action for m in cp.dropped]
            report.acknowledged += len(mine[i]) - unanswered.count("StopTransaction")
            await cp.close()
        report.kills = target.kills
        report.exit_code = await target.terminate()
        check(report, planned, emp)
        report.seconds = time.monotonic() - started
        if progress:
            print("\n".join(report.lines()), flush=True)
    return report
