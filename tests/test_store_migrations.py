"""Migrations: fresh database, re-run, and refusal of a database newer than the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpo_gateway.store import SchemaTooNew
from cpo_gateway.store.db import Database
from cpo_gateway.store.migrations import MIGRATIONS
from cpo_gateway.store.sql import Conn
from tests.storage import make_database, on_postgres


async def _tables(db: Database) -> set[str]:
    if on_postgres():
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {str(r[0]) for r in await db.all(sql)}


async def test_fresh_database_is_migrated_and_configured(tmp_path: Path) -> None:
    db = make_database(tmp_path / "g.db")
    version = await db.open()
    try:
        assert version == len(MIGRATIONS)
        assert await db.schema_version() == len(MIGRATIONS)
        if not on_postgres():
            assert await db.scalar("PRAGMA journal_mode") == "wal"
            assert await db.scalar("PRAGMA foreign_keys") == 1
        assert {
            "whitelist",
            "sessions",
            "transactions",
            "outbox",
            "connector_status",
            "stations_posted",
        } <= await _tables(db)
    finally:
        await db.close()


async def test_rerun_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    for _ in range(2):
        db = make_database(path)
        await db.open()
        rows = await db.all("SELECT version FROM schema_version ORDER BY version")
        await db.close()
    versions = [int(r[0]) for r in rows]
    if on_postgres():  # one baseline, then the later ones one by one
        assert versions[-1] == len(MIGRATIONS) and len(set(versions)) == len(versions)
    else:
        assert versions == list(range(1, len(MIGRATIONS) + 1))


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    db = make_database(path)
    await db.open()
    await db.write("INSERT INTO schema_version VALUES (?, 0)", (len(MIGRATIONS) + 5,))
    await db.close()
    newer = make_database(path)
    with pytest.raises(SchemaTooNew, match="newer than this gateway knows"):
        await newer.open()
    await newer.close()


async def test_failed_write_rolls_back(tmp_path: Path) -> None:
    db = make_database(tmp_path / "g.db")
    await db.open()

    def work(conn: Conn) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.run_write(work)
    assert await db.scalar("SELECT COUNT(*) FROM meta WHERE key = 'x'") == 0
    await db.close()
