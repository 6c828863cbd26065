"""A database the gateway cannot write or cannot read: the daemon refuses to start with exit
73 and one line, never turns an existing file into a new database, /healthz turns 503 while
commits fail, and the inspection commands give 73 and one line instead of a traceback."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from cpo_gateway.bridge.ports import SessionState
from cpo_gateway.bridge.storage import StorageUnavailable
from tests.conftest import Harness, write_config

pytestmark = pytest.mark.sqlite_only(
    reason="damages, empties, locks or write-protects the SQLite file"
)


def _run(config: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """`cpo-gateway <args> -c config` in a child; a daemon that does not exit in time is a
    gateway that started on a database it should have refused."""
    command, *rest = args
    proc = subprocess.Popen(
        [sys.executable, "-m", "cpo_gateway", command, "-c", str(config), *rest],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"`{command}` still running after {timeout}s: it did not refuse\n{out}")
    return proc.returncode, out, err


def _refused_once(out: str, err: str) -> str:
    """The one start_failed event (JSON lines on stdout), and no traceback anywhere."""
    assert "Traceback" not in out + err, out + err
    failed = [
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and json.loads(line)["event"] == "gateway.start_failed"
    ]
    assert len(failed) == 1, out
    assert "gateway.ready" not in out
    return str(failed[0]["error"])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    return write_config(tmp_path)


def _db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "gateway.db"


def test_a_corrupt_header_exits_73(config: Path, tmp_path: Path) -> None:
    garbage = os.urandom(8192)
    _db(tmp_path).write_bytes(garbage)
    code, out, err = _run(config, "run")
    assert code == 73, out + err
    assert "database not usable" in _refused_once(out, err)
    assert _db(tmp_path).read_bytes() == garbage  # left exactly as it was


def test_a_directory_in_place_of_the_database_exits_73(config: Path, tmp_path: Path) -> None:
    _db(tmp_path).mkdir()
    code, out, err = _run(config, "run")
    assert code == 73, out + err
    assert "not a file" in _refused_once(out, err)


def test_a_zero_length_file_is_refused_not_made_a_new_database(
    config: Path, tmp_path: Path
) -> None:
    _db(tmp_path).write_bytes(b"")
    code, out, err = _run(config, "run")
    assert code == 73, out + err
    assert "empty" in _refused_once(out, err)
    assert _db(tmp_path).stat().st_size == 0


def _a_real_database(config: Path, tmp_path: Path) -> None:
    """A database the gateway made itself (migrated, WAL), then stopped."""
    code, out, err = _run(config, "whitelist", "count")
    assert code == 0, out + err
    assert _db(tmp_path).stat().st_size > 0


@pytest.fixture
def unwritable(config: Path, tmp_path: Path) -> Iterator[Path]:
    """The gateway's own database, made unwritable for whoever runs the tests: a file mode
    stops a normal user; root ignores modes, but not the immutable attribute."""
    _a_real_database(config, tmp_path)
    db = _db(tmp_path)
    if os.geteuid() != 0:
        db.chmod(0o444)
        yield db
        db.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: no way to make a file unwritable")
    made = subprocess.run([chattr, "+i", str(db)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"running as root, chattr +i refused here: {made.stderr.strip()}")
    try:
        yield db
    finally:
        subprocess.run([chattr, "-i", str(db)], check=True)


def test_a_database_that_cannot_be_written_exits_73(config: Path, unwritable: Path) -> None:
    before = unwritable.read_bytes()
    code, out, err = _run(config, "run")
    assert code == 73, out + err
    assert "database not usable" in _refused_once(out, err)
    assert unwritable.read_bytes() == before


@pytest.mark.parametrize(
    "command", [("whitelist", "count"), ("outbox", "list"), ("sessions", "list")]
)
def test_inspection_of_a_corrupt_database_exits_73_with_one_line(
    config: Path, tmp_path: Path, command: tuple[str, str]
) -> None:
    _db(tmp_path).write_bytes(os.urandom(8192))
    code, out, err = _run(config, *command)
    assert code == 73, out + err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database not usable"), err


def test_inspection_of_damaged_pages_exits_73(config: Path, tmp_path: Path) -> None:
    # A valid header, then a truncated body: only quick_check or a query finds it.
    _a_real_database(config, tmp_path)
    db = _db(tmp_path)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 2)
    code, _, err = _run(config, "sessions", "list")
    assert code == 73, err
    assert len(err.strip().splitlines()) == 1 and "database not usable" in err


async def _healthz(h: Harness) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(h.base_url + "/healthz") as r:
        return r.status, await r.json()


async def test_healthz_is_unhealthy_while_commits_fail(harness: Harness) -> None:
    h, emp = harness, harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3)  # nothing else is writing now
    assert (await _healthz(h))[0] == 200
    # Another process holds the write lock past the gateway's busy timeout (5 s).
    blocker = sqlite3.connect(h.gateway.config.gateway.database, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable, match="locked") as failed:
            await h.store.set_session_state("no-such-session", SessionState.FAILED)
        assert isinstance(failed.value.__cause__, sqlite3.OperationalError)
        status, body = await _healthz(h)
        assert status == 503 and body["db"] == "writes failing", body
        assert "locked" in str(body["db_error"])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await h.store.set_session_state("no-such-session", SessionState.FAILED) is False
    status, body = await _healthz(h)
    assert status == 200 and body["db"] == "open", body
