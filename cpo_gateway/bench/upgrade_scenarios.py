"""The upgrade to the core's own outbox kinds (migration 11) on a large backlog: how long a
gateway's first start after the upgrade spends renaming rows, and that none is lost."""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import time
from pathlib import Path

from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table, num
from cpo_gateway.store import SqliteDatabase
from cpo_gateway.store.db import statements
from cpo_gateway.store.migrations import MIGRATIONS

BEFORE = 10  # the schema version the backlog was written at
# An outage's backlog: a status per EVSE (coalesced), the CDRs of every session since, and a
# station sync; delivered rows of the last days beside them (prune_after_days).
OLD_KINDS = ("session-post", "connector-post-status", "station-post")


def old_backlog(path: Path, rows: int) -> None:
    """A database at schema version 10 with `rows` outbox rows under the old kinds, half of
    them delivered; statuses one per key (as the old coalescing index kept them)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for version, script in enumerate(MIGRATIONS[:BEFORE], start=1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (version,))
    payload = '{"session_id": "s", "evse_id": "DE*CPO*E1001*1", "energy_kwh": 1.0}'
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO outbox (emp, kind, key, payload, state, created_at, next_at) "
        "VALUES ('bench', ?, ?, ?, ?, 0, 0)",
        (
            (
                OLD_KINDS[i % 3],
                f"k-{i}",
                payload,
                "delivered" if i % 2 else "pending",
            )
            for i in range(rows)
        ),
    )
    conn.execute("COMMIT")
    conn.close()


async def _upgrade(path: Path) -> tuple[float, int, int]:
    """(seconds to open and migrate, rows after, rows still under an old kind)."""
    db = SqliteDatabase(path)
    started = time.perf_counter()
    await db.open()
    took = time.perf_counter() - started
    try:
        total = int(await db.scalar("SELECT COUNT(*) FROM outbox") or 0)
        marks = ", ".join("?" * len(OLD_KINDS))
        old = int(
            await db.scalar(f"SELECT COUNT(*) FROM outbox WHERE kind IN ({marks})", OLD_KINDS)  # noqa: S608 - only placeholders
            or 0
        )
    finally:
        await db.close()
    return took, total, old


async def upgrade(ctx: Context, sizes: tuple[int, ...]) -> Table:
    table = Table(
        "upgrade: migration 11 renames the outbox's kinds at the first start",
        ("rows", "build s", "open+migrate s", "rows/s", "rows after", "old kinds left"),
    )
    for rows in sizes:
        directory = ctx.directory(f"upgrade-{rows}")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "gateway.db"
        started = time.perf_counter()
        await asyncio.to_thread(old_backlog, path, rows)
        built = time.perf_counter() - started
        took, total, old = await _upgrade(path)
        table.add(rows, num(built, 2), num(took, 2), num(rows / took, 0), total, old)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table.notes.append(
        "one transaction per migration; the gateway serves nothing until it is done "
        f"(bench process peak RSS {peak_mb:.0f} MB)"
    )
    return table
