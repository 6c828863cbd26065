"""The database behind the repositories: one write path and one read path per backend.

Writes: the group commit. Every write (`write` for one statement, `run_write` for a
function of the connection holding a whole transaction's statements) joins the next batch;
a batch runs on a worker thread over the one writer connection as one transaction, each
unit in its own savepoint, and commits before any of its callers resume. So a caller that
replies after its write has durable data, writers waiting together share one COMMIT, and a
unit that fails rolls back only itself. Nothing else writes.

Reads (`one`, `all`, `scalar`): the backend's read connections, outside any write
transaction: they see the last committed state, never a write half done.

Backends: SQLite (store/sqlite_db.py, the embedded default: one file, WAL) and PostgreSQL
(store/pg_db.py, for several nodes over one database). Each has its numbered migrations,
brought to the same version (store/migrations.py, store/migrations_pg.py).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from cpo_gateway import logs
from cpo_gateway.bridge.storage import StorageUnavailable
from cpo_gateway.store.sql import Conn, DatabaseErrors, IntegrityErrors, Params, Row

log = logs.get(__name__)
T = TypeVar("T")
_Pending = tuple[str | Callable[[Any], Any], Any, asyncio.Future[Any]]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer gateway."""


class DatabaseUnusable(RuntimeError):
    """The database cannot be used as it is: not a file, empty, corrupt, not writable, or
    not reachable. Never repaired or replaced here: what it holds (undelivered CDRs) is the
    operator's to recover."""


class Database(abc.ABC):
    """The group commit and the read API; a backend supplies the connections."""

    backend: str = ""
    # What a batch's transaction begins with (SQLite takes the write lock at once).
    _BEGIN = "BEGIN"

    def __init__(self) -> None:
        self._batch: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._write_failure: str | None = None

    # --- what a backend provides ---------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> int:
        """Connect, check, migrate; returns the schema version."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def is_open(self) -> bool: ...

    @property
    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data is, for logs and `check-config` (never a password)."""

    @abc.abstractmethod
    def _writer(self) -> Conn:
        """The writer connection (database thread), reconnected first if it was lost."""

    @abc.abstractmethod
    async def one(self, sql: str, params: Params = ()) -> Row | None: ...

    @abc.abstractmethod
    async def all(self, sql: str, params: Params = ()) -> list[Row]: ...

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    # --- shared ----------------------------------------------------------------------------------
    async def scalar(self, sql: str, params: Params = ()) -> Any:
        row = await self.one(sql, params)
        return None if row is None else row[0]

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

    async def run_write(self, work: Callable[[Any], T]) -> T:
        """Run `work` (a function of a `Conn`) as its own savepoint inside the next group
        commit, on the database thread: a transaction of many statements costs one hop, and
        writers waiting together share one COMMIT. Committed when this returns; if `work`
        raises, only its own changes are rolled back and the error is raised here."""
        result: T = await self._submit(work, None)
        return result

    async def write(self, sql: str, params: Params) -> None:
        """One statement, committed before this returns, sharing its commit with whatever
        else is waiting (group commit). Runs of the same statement go through executemany;
        if one fails, its run is retried statement by statement, so it fails only its caller.
        """
        await self._submit(sql, params)

    async def _submit(self, op: str | Callable[[Any], Any], params: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((op, params, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_batches(), name="db-group-commit")
        return await future

    async def _flush_batches(self) -> None:
        while self._batch:
            batch, self._batch = self._batch, []
            try:
                results = await asyncio.to_thread(self._apply, batch)
            except Exception as exc:  # nothing was committed: every caller learns it
                self._wrote(exc)
                failure = unavailable(exc)
                results = [(False, failure)] * len(batch)
            else:
                self._wrote(None)
            for (_, _, future), (ok, value) in zip(batch, results, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    async def drain(self) -> None:
        """Wait until every write submitted so far has been committed or has failed."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    def _apply(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        """The whole batch in one transaction, each unit in a savepoint (database thread)."""
        conn = self._writer()
        results: list[tuple[bool, Any]] = []
        conn.execute(self._BEGIN)
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
            self._rollback(conn)
            raise
        return results

    def _rollback(self, conn: Conn) -> None:
        # A connection that is gone has nothing to roll back.
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")


def unavailable(exc: Exception) -> Exception:
    """A failure of the database as a whole (not of one statement's data) as the port's
    StorageUnavailable, its cause attached; anything else as it is."""
    if isinstance(exc, DatabaseErrors) and not isinstance(exc, IntegrityErrors):
        wrapped = StorageUnavailable(
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
        wrapped.__cause__ = exc
        return wrapped
    return exc


def _in_savepoint(conn: Conn, unit: Callable[[], Any]) -> tuple[bool, Any]:
    """Run one unit of a group commit; on error undo just that unit."""
    conn.execute("SAVEPOINT unit")
    try:
        value = unit()
    except Exception as exc:
        conn.execute("ROLLBACK TO SAVEPOINT unit")
        conn.execute("RELEASE SAVEPOINT unit")
        return False, exc
    conn.execute("RELEASE SAVEPOINT unit")
    return True, value


def statements(script: str) -> Iterable[str]:
    """Split a migration into statements (ours hold no ';' inside literals or bodies)."""
    for part in script.split(";"):
        if part.strip():
            yield part.strip()


def run_migrations(
    conn: Conn, current: int, steps: Sequence[tuple[int, str]]
) -> list[tuple[int, float]]:
    """Apply `steps` (version, script) above `current`, each in its own transaction, on the
    writer connection (database thread). Returns (version, ms) per step applied."""
    applied: list[tuple[int, float]] = []
    for version, script in steps:
        if version <= current:
            continue
        started = time.monotonic()
        conn.execute("BEGIN")
        try:
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append((version, round((time.monotonic() - started) * 1000, 1)))
    return applied
