"""Group commit: writers waiting together share one transaction, and one that fails fails
only its own caller, with only its own changes undone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cpo_gateway.store.sql import Conn, IntegrityErrors
from tests.storage import make_database


async def test_a_failing_unit_fails_alone(tmp_path: Path) -> None:
    db = make_database(tmp_path / "g.db")
    await db.open()
    try:
        insert = "INSERT INTO meta (key, value) VALUES (?, ?)"

        def two_rows_then_fail(conn: Conn) -> None:
            conn.execute(insert, ("u1", "x"))
            conn.execute(insert, ("u2", "x"))
            raise ValueError("boom")

        def unit_ok(conn: Conn) -> int:
            conn.execute(insert, ("u3", "x"))
            return 42

        results = await asyncio.gather(
            db.write(insert, ("a", "1")),
            db.write(insert, ("b", "2")),
            db.write(insert, ("a", "dup")),  # primary key clash: fails alone
            db.run_write(two_rows_then_fail),
            db.run_write(unit_ok),
            db.write(insert, ("c", "3")),
            return_exceptions=True,
        )
        assert results[0] is None and results[1] is None and results[5] is None
        assert isinstance(results[2], IntegrityErrors)
        assert isinstance(results[3], ValueError)
        assert results[4] == 42
        keys = {r[0] for r in await db.all("SELECT key FROM meta WHERE key != 'whitelist_version'")}
        assert keys == {"a", "b", "c", "u3"}  # u1 and u2 were undone with their unit
        assert await db.scalar("SELECT value FROM meta WHERE key = 'a'") == "1"
    finally:
        await db.close()


async def test_writes_are_committed_when_they_return(tmp_path: Path) -> None:
    db = make_database(tmp_path / "g.db")
    await db.open()
    await db.write("INSERT INTO meta (key, value) VALUES ('k', 'v')", ())
    # Another connection (another process, say) sees it at once.
    other = make_database(tmp_path / "g.db")
    await other.open()
    try:
        assert await other.scalar("SELECT value FROM meta WHERE key = 'k'") == "v"
    finally:
        await other.close()
        await db.close()
    with pytest.raises(RuntimeError, match="not open"):
        await db.one("SELECT 1")
