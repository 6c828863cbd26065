"""The one SQLite database: WAL, foreign keys, busy timeout, numbered migrations.

Writers go through `transaction()`, which serialises them (SQLite has one writer anyway) and
commits before returning: a caller that replies after it has durable data. Reads outside a
transaction (`one`, `all`, `scalar`) use a second, read-only connection: in WAL mode it sees
the last committed state, never a write half done (a large whitelist replace, say).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from cpo_gateway import logs
from cpo_gateway.store.migrations import MIGRATIONS

log = logs.get(__name__)
T = TypeVar("T")
_Pending = tuple[str, Sequence[Any] | Mapping[str, Any], asyncio.Future[None]]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer gateway."""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._sync: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._batch: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self) -> int:
        """Open, configure and migrate; returns the schema version."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",  # durable across process crashes in WAL mode
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ):
            await self._conn.execute(pragma)
        version = await self.migrate()
        # For run_write: whole transactions as one call on a worker thread, never two at once
        # (the write lock), so no thread ever shares it with another.
        self._sync = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._sync.row_factory = sqlite3.Row
        for pragma in (
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ):
            self._sync.execute(pragma)
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        self._reader.row_factory = aiosqlite.Row
        await self._reader.execute("PRAGMA busy_timeout=5000")
        await self._reader.execute("PRAGMA foreign_keys=ON")
        await self._reader.execute("PRAGMA query_only=ON")
        return version

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._sync is not None:
            sync, self._sync = self._sync, None
            sync.close()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def schema_version(self) -> int:
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        row = await self.one("SELECT MAX(version) AS v FROM schema_version")
        return int(row["v"]) if row and row["v"] is not None else 0

    async def migrate(self) -> int:
        current = await self.schema_version()
        latest = len(MIGRATIONS)
        if current > latest:
            raise SchemaTooNew(
                f"{self.path}: database schema version {current} is newer than this gateway "
                f"knows ({latest}); run the newer gateway or restore a backup"
            )
        for version in range(current + 1, latest + 1):
            started = time.monotonic()
            async with self.transaction() as conn:
                for statement in _statements(MIGRATIONS[version - 1]):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )
            log.info(
                "db.migrated", version=version, ms=round((time.monotonic() - started) * 1000, 1)
            )
        return latest

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        async with self._write_lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def run_write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` as one transaction (BEGIN IMMEDIATE ... COMMIT) in a single trip to a
        worker thread: a transaction of many statements costs one hop, not one per statement.
        Committed when this returns; rolled back if `work` raises."""
        async with self._write_lock:
            return await asyncio.to_thread(self._run_sync, work)

    def _run_sync(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._sync
        if conn is None:
            raise RuntimeError("database is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def write(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
        """One statement, committed before this returns, sharing its commit with whatever
        else is waiting (group commit): under load many small writes cost one transaction.

        Statements run in the order they were submitted; one that fails is retried alone, so
        it fails only its own caller.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append((sql, params, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_batches(), name="db-group-commit")
        await future

    async def _flush_batches(self) -> None:
        while self._batch:
            batch, self._batch = self._batch, []

            def work(conn: sqlite3.Connection, batch: list[_Pending] = batch) -> None:
                start = 0
                while start < len(batch):  # consecutive runs of one statement: executemany
                    end = start
                    while end < len(batch) and batch[end][0] == batch[start][0]:
                        end += 1
                    conn.executemany(batch[start][0], [p for _, p, _ in batch[start:end]])
                    start = end

            try:
                await self.run_write(work)
            except Exception:
                if len(batch) == 1:
                    _settle(batch, error=True)
                    continue
                for item in batch:  # isolate the statement that failed

                    def one(conn: sqlite3.Connection, item: _Pending = item) -> None:
                        conn.execute(item[0], item[1])

                    try:
                        await self.run_write(one)
                    except Exception as exc:
                        if not item[2].done():
                            item[2].set_exception(exc)
                    else:
                        _settle([item])
            else:
                _settle(batch)

    @property
    def _read_conn(self) -> aiosqlite.Connection:
        # Before the reader exists (migrations) reads go to the writer.
        return self._reader if self._reader is not None else self.conn

    async def one(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self._read_conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._read_conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.one(sql, params)
        return None if row is None else row[0]


def _settle(batch: list[_Pending], *, error: bool = False) -> None:
    for _, _, future in batch:
        if future.done():
            continue
        if error:
            future.set_exception(RuntimeError("the write could not be committed"))
        else:
            future.set_result(None)


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements (ours hold no ';' inside literals)."""
    for part in script.split(";"):
        if part.strip():
            yield part.strip()
