"""Both backends end their migrations with the same schema: tables, columns and the indexes
the repositories rely on (a migration added to one list and not the other fails here)."""

from __future__ import annotations

from pathlib import Path

from cpo_gateway.store import PostgresDatabase, SqliteDatabase
from cpo_gateway.store.db import Database
from cpo_gateway.store.migrations import MIGRATIONS
from cpo_gateway.store.migrations_pg import BASELINE_VERSION, LATER

# What PostgreSQL has that SQLite gives every table without a column: the row number.
PG_ONLY_COLUMNS = {("sessions", "rowid")}


async def _sqlite_schema(db: Database) -> tuple[dict[str, set[str]], set[str]]:
    tables = [
        str(r[0])
        for r in await db.all(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    columns = {t: {str(r[1]) for r in await db.all(f"PRAGMA table_info({t})")} for t in tables}
    indexes = {
        str(r[0])
        for r in await db.all(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }
    return columns, indexes


async def _pg_schema(db: Database) -> tuple[dict[str, set[str]], set[str]]:
    rows = await db.all(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public'"
    )
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        if (table, column) not in PG_ONLY_COLUMNS:
            columns.setdefault(str(table), set()).add(str(column))
    # Indexes created by name, not those behind a constraint (a primary key, UNIQUE).
    indexes = {
        str(r[0])
        for r in await db.all(
            "SELECT indexname FROM pg_indexes i WHERE schemaname = 'public' AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
    }
    return columns, indexes


async def test_both_backends_have_the_same_tables_columns_and_indexes(
    tmp_path: Path, pg_url: str
) -> None:
    lite, pg = SqliteDatabase(tmp_path / "g.db"), PostgresDatabase(pg_url, connect_timeout_s=5)
    assert await lite.open() == await pg.open() == len(MIGRATIONS)
    try:
        lite_columns, lite_indexes = await _sqlite_schema(lite)
        pg_columns, pg_indexes = await _pg_schema(pg)
    finally:
        await lite.close()
        await pg.close()
    assert set(pg_columns) == set(lite_columns)
    for table, names in lite_columns.items():
        assert pg_columns[table] == names, table
    assert pg_indexes == lite_indexes


def test_the_postgresql_migrations_reach_the_sqlite_version() -> None:
    assert BASELINE_VERSION + len(LATER) == len(MIGRATIONS)
    assert sorted(LATER) == list(range(BASELINE_VERSION + 1, len(MIGRATIONS) + 1))


async def test_two_nodes_starting_at_once_migrate_once(pg_url: str) -> None:
    import asyncio

    nodes = [PostgresDatabase(pg_url, connect_timeout_s=5) for _ in range(3)]
    try:
        versions = await asyncio.gather(*(n.open() for n in nodes))
        assert versions == [len(MIGRATIONS)] * 3
        rows = await nodes[0].all("SELECT version FROM schema_version ORDER BY version")
        assert [int(r[0]) for r in rows] == [BASELINE_VERSION, *sorted(LATER)]
    finally:
        for n in nodes:
            await n.close()
