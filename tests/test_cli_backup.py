"""`cpo-gateway backup FILE`: a consistent copy while the gateway runs and writes, never over
an existing file without --force, exit 73 with one line when it cannot."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.conftest import PARTNER, Harness, write_config
from tests.test_oioi_whitelist import cli

pytestmark = pytest.mark.sqlite_only(
    reason="`cpo-gateway backup` copies the SQLite file; the copies are opened with sqlite3"
)


def _uids(start: int, count: int) -> list[str]:
    return [f"{i:08X}" for i in range(start, start + count)]


async def test_a_backup_taken_while_the_gateway_writes_is_whole(
    harness: Harness, tmp_path: Path
) -> None:
    config = harness.gateway.config.path
    copy = tmp_path / "backup" / "gateway-copy.db"
    copy.parent.mkdir()
    stop = asyncio.Event()
    posts = 0

    async def write_meanwhile() -> None:
        nonlocal posts
        async with harness.client() as client:
            for round_ in range(200):  # bounded: stops early once the backup is done
                status, _ = await client.rfid_post(PARTNER, _uids(round_ * 50, 500))
                assert status == 200
                posts += 1
                if stop.is_set():
                    return

    async with harness.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.status(1, "Available")
        async with harness.client() as client:
            await client.rfid_post(PARTNER, _uids(0, 500))  # rows there before the backup
        writer = asyncio.create_task(write_meanwhile())
        await asyncio.sleep(0)
        code, out, err = await cli(config, "backup", str(copy))
        stop.set()
        await writer
    assert code == 0, err
    assert out.startswith(f"wrote {copy} (") and "whitelist 500" in out
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # password hashes and the whitelist
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no temporary file left
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        # One whole list, never half of a replacement: rfid-post replaces atomically.
        assert conn.execute("SELECT COUNT(*) FROM whitelist").fetchone() == (500,)
        chargers = conn.execute("SELECT id, boot_status FROM chargers").fetchall()
        assert ("CP-BER-001", "Accepted") in chargers
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] >= 3  # station-posts
    finally:
        conn.close()
    assert posts >= 1


async def test_an_existing_file_is_kept_unless_force(harness: Harness, tmp_path: Path) -> None:
    config = harness.gateway.config.path
    target = tmp_path / "keep.db"
    target.write_bytes(b"precious")
    code, out, err = await cli(config, "backup", str(target))
    assert (code, out) == (73, "")
    assert err == f"error: {target} exists (give --force to replace it)\n"
    assert target.read_bytes() == b"precious"
    code, out, err = await cli(config, "backup", str(target), "--force")
    assert code == 0, err
    conn = sqlite3.connect(target)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


async def test_what_cannot_be_backed_up_exits_73_with_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, _, err = await cli(config, "backup", str(tmp_path / "a.db"))
    assert code == 73 and err.startswith("error: database not usable") and err.count("\n") == 1
    db = tmp_path / "state" / "gateway.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(os.urandom(8192))
    code, _, err = await cli(config, "backup", str(tmp_path / "b.db"))
    assert code == 73 and err.startswith("error: database not usable") and err.count("\n") == 1
    assert not (tmp_path / "b.db").exists()
    code, _, err = await cli(config, "backup", str(tmp_path / "no-such-dir" / "c.db"))
    assert code == 73 and err.startswith("error: ") and err.count("\n") == 1
