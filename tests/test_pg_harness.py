"""The suite's PostgreSQL: a throwaway server on loopback that takes scram logins with a
password a URL must escape, a fresh database per test, restart and kill -9 that keep what was
committed, and `--backend` deciding where every gateway a test starts keeps its state."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psycopg
import pytest

from cpo_gateway.bench import pg_server
from cpo_gateway.bench.pg_server import PgServer, PgUnavailableError, find_bindir
from tests.conftest import ROOT, STORAGE_URL_ENV, write_config

needs_postgres = pytest.mark.skipif(
    find_bindir() is None, reason="PostgreSQL is not installed: run scripts/services-setup"
)


def _user_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog',"
            " 'information_schema')"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_the_server_listens_on_loopback_with_test_settings_and_scram(postgres: PgServer) -> None:
    with psycopg.connect(postgres.url()) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in ("listen_addresses", "fsync", "full_page_writes", "max_connections")
        }
        assert conn.info.host == "127.0.0.1" and conn.info.port == postgres.port
        role = conn.execute(
            "SELECT rolsuper, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid"
            " WHERE rolname = current_user"
        ).fetchone()
    assert settings == {
        "listen_addresses": ("127.0.0.1",),
        "fsync": ("off",),
        "full_page_writes": ("off",),
        "max_connections": ("300",),
    }
    assert role == (True, True)
    # The password needs escaping in a URL, and a wrong one is refused over TCP.
    assert any(c in postgres.password for c in "@:/%") and postgres.password not in postgres.url()
    wrong = postgres.url().replace("%40", "%41", 1)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10).close()


def test_each_database_is_fresh_and_dropping_it_disconnects_its_users(
    postgres: PgServer, pg_url: str
) -> None:
    assert _user_tables(pg_url) == []
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE t (x int)")
    other = postgres.create_database()
    assert other != pg_url and _user_tables(other) == [] and _user_tables(pg_url) == ["t"]
    user = psycopg.connect(other, autocommit=True)
    try:
        postgres.drop_database(other)
        with pytest.raises(psycopg.OperationalError):
            user.execute("SELECT 1")
    finally:
        user.close()
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(other, connect_timeout=10).close()


@needs_postgres
def test_restart_and_kill_keep_what_was_committed(tmp_path: Path) -> None:
    """A server of its own: the session's must not see a kill. The row committed just before
    the kill survives it (synchronous_commit stays on)."""
    with PgServer() as server:
        url = server.create_database()
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        port, first_pid = server.port, server.postmaster_pid()
        server.restart()
        assert server.port == port and server.postmaster_pid() != first_pid
        survivor = psycopg.connect(url, autocommit=True)
        try:
            survivor.execute("INSERT INTO t VALUES (2)")
            server.kill()
            assert not server.running
            with pytest.raises(psycopg.OperationalError):
                survivor.execute("SELECT 1")
        finally:
            survivor.close()
        server.start()  # crash recovery from WAL, on the same port
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT x FROM t ORDER BY x").fetchall()
        assert rows == [(1,), (2,)]
        base = server.base
    assert base is not None and not base.exists()


def test_a_missing_installation_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPO_GATEWAY_PG_BINDIR", str(tmp_path))  # no initdb there
    assert find_bindir() is None
    with pytest.raises(PgUnavailableError, match="scripts/services-setup"):
        PgServer()


def test_the_backend_decides_where_gateways_store(backend: str, tmp_path: Path) -> None:
    written = tomllib.loads(write_config(tmp_path).read_text())
    if backend == "sqlite":
        assert STORAGE_URL_ENV not in os.environ and "storage" not in written
        return
    url = os.environ[STORAGE_URL_ENV]
    assert written["storage"] == {"url": url}
    assert url.startswith("postgresql://") and _user_tables(url) == []


@pytest.fixture(scope="module")
def module_storage_url() -> str | None:
    """What a module-scoped fixture starting a gateway would see."""
    return os.environ.get(STORAGE_URL_ENV)


def test_module_scoped_gateways_get_a_database_of_their_own(
    backend: str, module_storage_url: str | None
) -> None:
    if backend == "sqlite":
        assert module_storage_url is None
        return
    assert module_storage_url is not None and module_storage_url.startswith("postgresql://")
    assert module_storage_url != os.environ[STORAGE_URL_ENV]
    assert _user_tables(module_storage_url) == []


@pytest.mark.sqlite_only(reason="the probe of the marker itself")
def test_sqlite_only_probe(backend: str) -> None:
    assert backend == "sqlite"


@needs_postgres
def test_sqlite_only_tests_are_skipped_on_postgresql_with_their_reason() -> None:
    env = {**os.environ, "CPO_GATEWAY_TEST_BACKEND": "postgresql"}
    env.pop(STORAGE_URL_ENV, None)
    probe = f"{Path(__file__).relative_to(ROOT)}::test_sqlite_only_probe"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout and "sqlite only: the probe of the marker itself" in run.stdout


@needs_postgres
def test_a_port_taken_before_the_first_start_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = int(holder.getsockname()[1])
        offered: list[int] = []
        real = pg_server.free_port

        def taken_first() -> int:
            offered.append(real() if offered else taken)
            return offered[-1]

        monkeypatch.setattr(pg_server, "free_port", taken_first)
        with PgServer() as server:
            assert offered[0] == taken and server.port == offered[-1] != taken
            assert server.running
            with psycopg.connect(server.url(), connect_timeout=10) as conn:
                assert conn.info.port == server.port


@needs_postgres
def test_a_test_process_killed_outright_leaves_no_server_behind() -> None:
    """SIGKILL runs neither fixtures nor atexit: the reaper started beside the server stops it
    and removes its directory."""
    script = (
        "import os, sys, signal\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from cpo_gateway.bench.pg_server import PgServer\n"
        "s = PgServer(); s.start()\n"
        "print(s.postmaster_pid(), s.base, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == -9, run.stderr
    pid_text, base_text = run.stdout.split()
    pid, base = int(pid_text), Path(base_text)
    for _ in range(300):  # bounded: the reaper polls every second
        if not base.exists() and not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    assert not base.exists(), f"{base} left behind"
    assert not Path(f"/proc/{pid}").exists(), f"postgres {pid} still running"
