"""The one SQLite database: WAL, foreign keys, busy timeout, numbered migrations.

Writers go through `transaction()`, which serialises them (SQLite has one writer anyway) and
commits before returning: a caller that replies after it has durable data. Reads outside a
transaction (`one`, `all`, `scalar`) use a second, read-only connection: in WAL mode it sees
the last committed state, never a write half done (a large whitelist replace, say).
`lookup` reads one row by key on the event loop's own thread (see there).
"""

from __future__ import annotations

import asyncio
import functools
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
_Pending = tuple[str | Callable[[sqlite3.Connection], Any], Any, asyncio.Future[Any]]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer gateway."""


class DatabaseUnusable(RuntimeError):
    """The database file cannot be used as it is: not a file, empty, corrupt, or not
    writable. Never repaired or replaced here: what it holds (undelivered CDRs) is the
    operator's to recover."""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._sync: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._batch: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._write_failure: str | None = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def write_failure(self) -> str | None:
        """Why the last commit failed as a whole, until one succeeds again (for /healthz)."""
        return self._write_failure

    def _wrote(self, failure: BaseException | None) -> None:
        if failure is not None:
            if self._write_failure is None:
                log.error("db.write_failed", error=str(failure))
            self._write_failure = str(failure) or type(failure).__name__
        elif self._write_failure is not None:
            log.info("db.write_recovered", error=self._write_failure)
            self._write_failure = None

    async def open(self) -> int:
        """Open, check, configure and migrate; returns the schema version.

        Only a missing file is created. An existing one must be a non-empty SQLite file
        that passes `PRAGMA quick_check` and takes a write (rolled back); otherwise
        DatabaseUnusable, and nothing on disk is changed.
        """
        _check_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return await self._open()
        except sqlite3.Error as exc:
            await self.close()
            raise DatabaseUnusable(f"{self.path}: {exc}") from exc

    async def _open(self) -> int:
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
        async with self._conn.execute("PRAGMA quick_check") as cur:
            problems = [str(r[0]) for r in await cur.fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"quick_check: {'; '.join(problems[:3])}")
        version = await self.migrate()
        # A real write, rolled back: a read-only file opens, reads and even takes BEGIN
        # IMMEDIATE; only writing a row says otherwise. Nothing on disk changes.
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            await self._conn.execute(
                "INSERT INTO meta (key, value) VALUES ('write_check', '') "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
        finally:
            await self._conn.execute("ROLLBACK")
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
        self._inline = sqlite3.connect(self.path, isolation_level=None)
        self._inline.row_factory = sqlite3.Row
        for pragma in ("PRAGMA busy_timeout=250", "PRAGMA query_only=ON"):
            self._inline.execute(pragma)
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
        if self._inline is not None:  # last: lookups work as long as anything does
            inline, self._inline = self._inline, None
            inline.close()

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
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._wrote(exc)
                raise
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            try:
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._wrote(exc)
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise
            self._wrote(None)

    async def run_write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` (plain sqlite3 code) as its own savepoint inside the next group commit,
        on the database thread: a transaction of many statements costs one hop, and writers
        waiting together share one COMMIT. Committed when this returns; if `work` raises,
        only its own changes are rolled back and the error is raised here."""
        result: T = await self._submit(work, None)
        return result

    async def write(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
        """One statement, committed before this returns, sharing its commit with whatever
        else is waiting (group commit). Runs of the same statement go through executemany;
        if one fails, its run is retried statement by statement, so it fails only its caller.
        """
        await self._submit(sql, params)

    async def _submit(self, op: str | Callable[[sqlite3.Connection], Any], params: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((op, params, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_batches(), name="db-group-commit")
        return await future

    async def _flush_batches(self) -> None:
        while self._batch:
            batch, self._batch = self._batch, []
            async with self._write_lock:  # transaction() users write on the other connection
                try:
                    results = await asyncio.to_thread(self._apply, batch)
                except Exception as exc:  # nothing was committed: every caller learns it
                    results = [(False, exc)] * len(batch)
                    self._wrote(exc)
                else:
                    self._wrote(None)
            for (_, _, future), (ok, value) in zip(batch, results, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _apply(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        """The whole batch in one transaction, each unit in a savepoint (database thread)."""
        conn = self._sync
        if conn is None:
            raise RuntimeError("database is not open")
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            while i < len(batch):
                op = batch[i][0]
                if not isinstance(op, str):
                    results.append(_in_savepoint(conn, functools.partial(op, conn)))
                    i += 1
                    continue
                j = i
                while j < len(batch) and batch[j][0] == op:
                    j += 1
                run = [p for _, p, _ in batch[i:j]]
                if _in_savepoint(conn, functools.partial(conn.executemany, op, run))[0]:
                    results.extend([(True, None)] * (j - i))
                else:
                    for params in run:
                        ok, value = _in_savepoint(conn, functools.partial(conn.execute, op, params))
                        results.append((ok, None if ok else value))
                i = j
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

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

    def lookup(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """One row by primary key, read on the calling thread (the event loop's).

        For the small, hot reads on a charger's path (its password at every handshake, its
        local-list state): the read takes microseconds, the hop to the reader thread much
        longer, and during a reconnect storm thousands of hops come back together and resume
        as one long loop iteration. Only for indexed point reads: a WAL reader never waits
        for the writer, and the page is almost always cached. In the rare case SQLite is busy
        (recovery after a crash) it waits 250 ms at most, then raises OperationalError."""
        if self._inline is None:
            raise RuntimeError("database is not open")
        row: sqlite3.Row | None = self._inline.execute(sql, params).fetchone()
        return row


def _check_file(path: Path) -> None:
    """Refuse what SQLite would misread: a directory, or an empty file (SQLite would
    silently make it a new database, and whatever was meant to be there is gone)."""
    if not path.exists():
        return
    if not path.is_file():
        raise DatabaseUnusable(f"{path}: exists but is not a file")
    if path.stat().st_size == 0:
        raise DatabaseUnusable(
            f"{path}: the file is empty (0 bytes); an existing database is never "
            "reinitialised: restore it from a backup, or move it away to start anew"
        )


def _in_savepoint(conn: sqlite3.Connection, unit: Callable[[], Any]) -> tuple[bool, Any]:
    """Run one unit of a group commit; on error undo just that unit."""
    conn.execute("SAVEPOINT unit")
    try:
        value = unit()
    except Exception as exc:
        conn.execute("ROLLBACK TO unit")
        conn.execute("RELEASE unit")
        return False, exc
    conn.execute("RELEASE unit")
    return True, value


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements (ours hold no ';' inside literals)."""
    for part in script.split(";"):
        if part.strip():
            yield part.strip()
