"""`scripts/bench --scenario outbox-claims`: N claimers (each its own Store: connections and
group commit, as N gateway nodes) draining one outbox on one PostgreSQL database.

Per claimer count, on a fresh database: every claimer claims a batch, then marks each row
delivered in its own call (as the Deliverer does after each EMP answer; the EMP itself costs
nothing here), until no row is left. "delivered rows/s" is the whole drain; "claimed rows/s"
counts only the time the claimers spent inside `due` (what claiming alone would sustain).
Duplicates count rows handed out to more than one claimer (must be 0); "left" counts rows
still pending at the end (must be 0). A SQLite row (one claimer on one file) is printed for
reference: one node's own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.pg_server import fresh_database, throwaway_server
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.store import Database, PostgresDatabase, SqliteDatabase, Store

EMP = "bench"
LEASE_S = 600.0  # longer than the run: no claim expires in the middle of a phase


@dataclass
class Phase:
    seconds: float = 0.0
    left: int = 0
    handed: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return sum(1 for n in self.handed.values() if n > 1)


async def _drain(stores: Sequence[Store], rows: int, batch: int, now: float) -> Phase:
    phase = Phase()

    async def claimer(store: Store) -> None:
        idle = 0
        for _ in range(rows // batch + 1000):  # bounded: every row once, plus idle passes
            started = time.perf_counter()
            items = await store.due(EMP, now, batch, lease_s=LEASE_S)
            phase.latencies.append(time.perf_counter() - started)
            for item in items:
                phase.handed[item.id] += 1
            if items:
                await asyncio.gather(*(store.mark_delivered([i.id], now) for i in items))
            if items:
                idle = 0
            elif len(phase.handed) >= rows or (idle := idle + 1) >= 3:
                return

    started = time.perf_counter()
    # Every claimer ends before the stores close, even when one fails.
    failed = [
        r
        for r in await asyncio.gather(*(claimer(s) for s in stores), return_exceptions=True)
        if isinstance(r, BaseException)
    ]
    if failed:
        raise failed[0]
    phase.seconds = time.perf_counter() - started
    return phase


async def _run(make: Callable[[], Database], claimers: int, rows: int, batch: int) -> Phase:
    stores = []
    try:
        for i in range(claimers):
            db = make()
            await db.open()
            stores.append(Store(db, node=f"bench-{i + 1}"))
        now = time.time()
        for start in range(0, rows, 1000):
            chunk = range(start, min(rows, start + 1000))
            owed = [NewOutbox(EMP, "cdr", f"s-{i}", {"session_id": f"s-{i}"}) for i in chunk]
            await stores[0].enqueue(owed, now)
        if stores[0].db.backend == "postgresql":
            # What autovacuum does in a running database: without statistics the planner
            # walks the ordering rule's NOT EXISTS as a quadratic join (~0.2 s per claim at
            # 300 rows on the test machine), which measures the planner, not the claims.
            await stores[0].db.write("ANALYZE outbox", ())
        phase = await _drain(stores, rows, batch, now)
        phase.left = int(
            await stores[0].db.scalar(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND emp = ?", (EMP,)
            )
        )
        return phase
    finally:
        for store in stores:
            await store.db.close()


async def outbox_claims(
    ctx: Context, rows: int, claimers: Sequence[int], pg_url: str | None, batch: int = 100
) -> Table:
    table = Table(
        f"outbox claims: {rows:,} rows, batches of {batch}, N claimers on one database",
        (
            "backend",
            "claimers",
            "delivered rows/s",
            "claimed rows/s",
            "claim p50 ms",
            "claim p99 ms",
            "duplicates",
            "left",
        ),
    )
    workdir = ctx.directory("outbox-claims")
    with contextlib.ExitStack() as stack:
        server = pg_url or stack.enter_context(throwaway_server())
        for n in claimers:
            with fresh_database(server) as url:
                phase = await _run(functools.partial(PostgresDatabase, url), n, rows, batch)
            _add(table, "postgresql", n, phase)
        path = workdir / "claims.sqlite3"
        _add(
            table, "sqlite", 1, await _run(functools.partial(SqliteDatabase, path), 1, rows, batch)
        )
    table.notes.append(
        "claim then one mark_delivered per row (group commit), no EMP; claimed rows/s: rows "
        "over the claimers' time inside due; duplicates = rows handed to two claimers"
    )
    return table


def _add(table: Table, backend: str, n: int, phase: Phase) -> None:
    inside = sum(phase.latencies) / n
    table.add(
        backend,
        n,
        num(len(phase.handed) / phase.seconds, 0),
        num(len(phase.handed) / inside, 0) if inside else "-",
        ms(percentile(phase.latencies, 50)),
        ms(percentile(phase.latencies, 99)),
        phase.duplicates,
        phase.left,
    )
