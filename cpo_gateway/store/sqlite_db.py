"""SQLite, the embedded default: one file in WAL mode, foreign keys on.

Write path: one sqlite3 connection, used only by the group commit on a worker thread (one
batch at a time). Read path: one read-only aiosqlite connection; in WAL mode it sees the
last committed state and never waits for the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite

from cpo_gateway import logs
from cpo_gateway.store.db import Database, DatabaseUnusable, SchemaTooNew, run_migrations
from cpo_gateway.store.migrations import MIGRATIONS
from cpo_gateway.store.sql import Conn, Params, Row

log = logs.get(__name__)

_SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
)


class SqliteDatabase(Database):
    backend = "sqlite"
    _BEGIN = "BEGIN IMMEDIATE"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._sync: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._sync is not None

    @property
    def describe(self) -> str:
        return str(self.path)

    async def open(self) -> int:
        """Open, check, configure and migrate; returns the schema version.

        Only a missing file is created. An existing one must be a non-empty SQLite file
        that passes `PRAGMA quick_check` and takes a write (rolled back); otherwise
        DatabaseUnusable, and nothing on disk is changed.
        """
        _check_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            version = await asyncio.to_thread(self._open_writer)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            self._reader.row_factory = aiosqlite.Row
            for pragma in (
                "PRAGMA busy_timeout=5000",
                "PRAGMA foreign_keys=ON",
                "PRAGMA query_only=ON",
            ):
                await self._reader.execute(pragma)
            return version
        except SchemaTooNew:
            await self.close()
            raise
        except sqlite3.Error as exc:
            await self.close()
            raise DatabaseUnusable(f"{self.path}: {exc}") from exc

    def _open_writer(self) -> int:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread off: the
        # group commit runs each batch on a worker thread, never two at once.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._sync = conn
        conn.row_factory = sqlite3.Row
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",  # durable across process crashes in WAL mode
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ):
            conn.execute(pragma)
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"quick_check: {'; '.join(problems[:3])}")
        conn.execute(_SCHEMA_VERSION_TABLE)
        current = _version(conn)
        latest = len(MIGRATIONS)
        if current > latest:
            raise SchemaTooNew(
                f"{self.path}: database schema version {current} is newer than this gateway "
                f"knows ({latest}); run the newer gateway or restore a backup"
            )
        steps = [(i + 1, script) for i, script in enumerate(MIGRATIONS)]
        for version, ms in run_migrations(conn, current, steps):
            log.info("db.migrated", version=version, ms=ms)
        # A real write, rolled back: a read-only file opens, reads and even takes BEGIN
        # IMMEDIATE; only writing a row says otherwise. Nothing on disk changes.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('write_check', '') "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
        finally:
            conn.execute("ROLLBACK")
        return latest

    async def close(self) -> None:
        await self.drain()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()
        if self._sync is not None:
            sync, self._sync = self._sync, None
            sync.close()

    def _writer(self) -> Conn:
        if self._sync is None:
            raise RuntimeError("database is not open")
        return self._sync

    @property
    def _read(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("database is not open")
        return self._reader

    async def one(self, sql: str, params: Params = ()) -> Row | None:
        async with self._read.execute(sql, params) as cur:
            row: Row | None = await cur.fetchone()
            return row

    async def all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._read.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def schema_version(self) -> int:
        row = await self.one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row is not None and row[0] is not None else 0


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


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
