"""Migrations: fresh database, re-run, and refusal of a database newer than the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpo_gateway.store import Database, SchemaTooNew
from cpo_gateway.store.migrations import MIGRATIONS


async def test_fresh_database_is_migrated_and_configured(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.db")
    version = await db.open()
    try:
        assert version == len(MIGRATIONS)
        assert await db.scalar("PRAGMA journal_mode") == "wal"
        assert await db.scalar("PRAGMA foreign_keys") == 1
        tables = {r[0] for r in await db.all("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {
            "whitelist",
            "sessions",
            "transactions",
            "outbox",
            "connector_status",
            "stations_posted",
        } <= tables
    finally:
        await db.close()


async def test_rerun_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    for _ in range(2):
        db = Database(path)
        await db.open()
        rows = await db.all("SELECT version FROM schema_version")
        await db.close()
    assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    db = Database(path)
    await db.open()
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO schema_version VALUES (?, 0)", (len(MIGRATIONS) + 5,))
    await db.close()
    newer = Database(path)
    with pytest.raises(SchemaTooNew, match="newer than this gateway knows"):
        await newer.open()
    await newer.close()


async def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.db")
    await db.open()
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")
            raise RuntimeError("boom")
    assert await db.scalar("SELECT COUNT(*) FROM meta WHERE key = 'x'") == 0
    await db.close()
