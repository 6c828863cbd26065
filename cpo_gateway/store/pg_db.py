"""PostgreSQL, for several gateway nodes over one database (psycopg 3).

Write path: one synchronous psycopg connection, used only by the group commit on a worker
thread, exactly as SQLite's: the repositories' write functions are plain functions of a
connection, the same code for both backends (`PgConn` takes their SQL). Read path: a few
asynchronous psycopg connections (`read_connections`), used in turn, on the event loop.

A connection lost (PostgreSQL restarted, a network cut) fails what was running on it: the
writes of that batch fail their callers (a charger gets a CallError and sends again), and
the next batch or read connects anew. Migrations run under an advisory lock, so two nodes
starting at once apply each one once.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg

from cpo_gateway import logs
from cpo_gateway.config_storage import redact
from cpo_gateway.store.db import (
    Database,
    DatabaseUnusable,
    SchemaTooNew,
    run_migrations,
    unavailable,
)
from cpo_gateway.store.migrations import MIGRATIONS
from cpo_gateway.store.migrations_pg import BASELINE, BASELINE_VERSION, LATER
from cpo_gateway.store.sql import Conn, Params, Row

log = logs.get(__name__)

# pg_advisory_lock key of the migrations: "cpo-gateway migrate" as a 64-bit number.
MIGRATION_LOCK = 0x6370_6F67_6D69_6772
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.lru_cache(maxsize=4096)
def pg_sql(sql: str, has_params: bool = True) -> str:
    """The repositories' SQL in psycopg's placeholders: `?` -> `%s`, `:name` -> `%(name)s`,
    a literal `%` doubled. Quoted text and identifiers, and `::` casts, are left alone."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # '' inside a literal
                        j += 2
                        continue
                    break
                j += 1
            chunk = sql[i : j + 1]
            out.append(chunk.replace("%", "%%") if has_params else chunk)
            i = j + 1
        elif c == "?" and has_params:
            out.append("%s")
            i += 1
        elif c == ":" and has_params:
            if i + 1 < n and sql[i + 1] == ":":
                out.append("::")
                i += 2
                continue
            m = _NAME.match(sql, i + 1)
            if m is None or (i > 0 and sql[i - 1] == ":"):
                out.append(c)
                i += 1
            else:
                out.append(f"%({m.group(0)})s")
                i = m.end()
        elif c == "%" and has_params:
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class PgRow(tuple[Any, ...]):
    """A row by position or by column name, like sqlite3.Row."""

    __slots__ = ()
    _index: dict[str, int] = {}  # noqa: RUF012 - set per result shape by _shape

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=1024)
def _shape(names: tuple[str, ...]) -> type[PgRow]:
    return type("PgRow", (PgRow,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def pg_rows(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    """psycopg row factory: PgRow of the cursor's columns."""
    description = cursor.description
    if description is None:
        return PgRow
    return _shape(tuple(c.name for c in description))


class PgConn:
    """A psycopg connection that takes the repositories' SQL (see store/sql.py)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Params = (), /) -> psycopg.Cursor[Any]:
        if not parameters:
            return self.raw.execute(pg_sql(sql, False))
        return self.raw.execute(pg_sql(sql), parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Params], /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(pg_sql(sql), seq_of_parameters)
        return cur


class PostgresDatabase(Database):
    backend = "postgresql"

    def __init__(
        self, url: str, *, read_connections: int = 3, connect_timeout_s: float = 30.0
    ) -> None:
        super().__init__()
        self.url = url
        self.read_connections = max(1, read_connections)
        self.connect_timeout_s = connect_timeout_s
        self._sync: psycopg.Connection[Any] | None = None
        self._conn: PgConn | None = None
        self._readers: list[psycopg.AsyncConnection[Any] | None] = []
        self._turn = itertools.count()
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def describe(self) -> str:
        return redact(self.url)

    async def open(self) -> int:
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                version = await asyncio.to_thread(self._open_writer)
                break
            except SchemaTooNew:
                await self.close()
                raise
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    await self.close()
                    raise DatabaseUnusable(f"{self.describe}: {_first_line(exc)}") from exc
                log.warning("db.unreachable", database=self.describe, error=_first_line(exc))
                await asyncio.sleep(1.0)
            except psycopg.Error as exc:
                await self.close()
                raise DatabaseUnusable(f"{self.describe}: {_first_line(exc)}") from exc
        self._readers = [None] * self.read_connections
        self._open = True
        return version

    def _connect_sync(self) -> psycopg.Connection[Any]:
        return psycopg.Connection.connect(
            self.url, autocommit=True, row_factory=pg_rows, connect_timeout=5
        )

    def _open_writer(self) -> int:
        raw = self._connect_sync()
        self._sync, self._conn = raw, PgConn(raw)
        conn = self._conn
        conn.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row is not None and row[0] is not None else 0
            latest = len(MIGRATIONS)
            if current > latest:
                raise SchemaTooNew(
                    f"{self.describe}: database schema version {current} is newer than this "
                    f"gateway knows ({latest}); run the newer gateway"
                )
            steps = [(BASELINE_VERSION, BASELINE)] if current == 0 else []
            steps += sorted(LATER.items())
            for version, ms in run_migrations(conn, current, steps):
                log.info("db.migrated", version=version, ms=ms, database=self.describe)
        finally:
            conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
        return latest

    async def close(self) -> None:
        self._open = False
        await self.drain()
        readers, self._readers = self._readers, []
        for reader in readers:
            if reader is not None:
                await reader.close()
        if self._sync is not None:
            sync, self._sync, self._conn = self._sync, None, None
            await asyncio.to_thread(sync.close)

    def _writer(self) -> Conn:
        if not self._open and self._conn is None:
            raise RuntimeError("database is not open")
        if self._sync is None or self._sync.closed or self._sync.broken:
            if self._sync is not None:
                self._sync.close()
            log.info("db.reconnecting", database=self.describe, role="writer")
            raw = self._connect_sync()
            self._sync, self._conn = raw, PgConn(raw)
        assert self._conn is not None
        return self._conn

    async def _reader(self, slot: int) -> psycopg.AsyncConnection[Any]:
        if not self._open:
            raise RuntimeError("database is not open")
        reader = self._readers[slot]
        if reader is None or reader.closed or reader.broken:
            if reader is not None:
                await reader.close()
            try:
                reader = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, row_factory=pg_rows, connect_timeout=5
                )
            except psycopg.OperationalError as exc:
                raise unavailable(exc) from exc
            self._readers[slot] = reader
        return reader

    async def _fetch(self, sql: str, params: Params, many: bool) -> Any:
        slot = next(self._turn) % self.read_connections
        query = pg_sql(sql, bool(params))
        for attempt in (1, 2):
            reader = await self._reader(slot)
            try:
                cur = await reader.execute(query, params or None)
                return await (cur.fetchall() if many else cur.fetchone())
            except psycopg.OperationalError as exc:
                # A read is safe to repeat: once more on a new connection if this one died.
                if attempt == 2 or not (reader.broken or reader.closed):
                    raise unavailable(exc) from exc
        raise AssertionError("unreachable")

    async def one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = await self._fetch(sql, params, many=False)
        return row

    async def all(self, sql: str, params: Params = ()) -> list[Row]:
        rows: list[Row] = await self._fetch(sql, params, many=True)
        return rows

    async def schema_version(self) -> int:
        value = await self.scalar("SELECT MAX(version) FROM schema_version")
        return 0 if value is None else int(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
