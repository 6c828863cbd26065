"""A throwaway PostgreSQL server for the test session and the benchmarks, from Debian's
packages.

`PgServer` runs initdb into a fresh temporary directory and starts the server on a free
loopback port with its unix socket in that directory; nothing of the system's PostgreSQL
(clusters, config, port 5432) is used. The settings are for tests only: fsync and full-page
writes are off, because the data lives for one run and a lost write after an OS crash does not
matter. synchronous_commit stays on: with fsync off a commit costs one write() into the page
cache (the same ~25,000 commits/s either way, measured on the test machine), and it is what
makes a commit acknowledged before `kill()` survive it, which the crash tests rely on (with it
off, a kill -9 loses the last ~200 ms of acknowledged commits).

The superuser has a password with characters that URLs must escape, and loopback connections
use scram-sha-256, so the gateway's URL handling and authentication are exercised as in a
deployment. PostgreSQL refuses to run as root: as root, every server command runs as the
`postgres` OS user the package creates (runuser), otherwise as the current user.

`scripts/services-setup` installs the package; `find_bindir()` is None without it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

SUPERUSER = "cpo_test"
# '@', ':', '/' and '%' must be percent-encoded in a URL: a URL handled as a plain string breaks.
PASSWORD = "pg-t3st:p@ss/w%rd"  # noqa: S105 (a throwaway server on loopback)
OS_USER = "postgres"  # the Debian package's user, for running the server as root
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}
START_TIMEOUT_S = 60.0
# Started beside the server: once the test process is gone, even by SIGKILL (when neither
# fixtures nor atexit run), an immediate shutdown (SIGQUIT) and the directory removed.
REAPER = """
while kill -0 "$1" 2>/dev/null; do sleep 1; done
pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then
    kill -QUIT "$pid"
    n=0
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
fi
rm -rf "$3"
"""


class PgUnavailableError(RuntimeError):
    """PostgreSQL is not installed, or cannot be run from here (the message says why)."""


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin with initdb, pg_ctl and postgres, or
    $CPO_GATEWAY_PG_BINDIR when set."""
    forced = os.environ.get("CPO_GATEWAY_PG_BINDIR")
    candidates = (
        [Path(forced)]
        if forced
        else sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL server in its own temporary directory. Not thread-safe."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PgUnavailableError(
                "PostgreSQL is not installed: run scripts/services-setup"
                " (Debian's postgresql package)"
            )
        self._bindir = found
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                entry = pwd.getpwnam(OS_USER)
            except KeyError as exc:
                raise PgUnavailableError(
                    f"running as root needs the {OS_USER!r} OS user to run PostgreSQL"
                ) from exc
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
        self.base: Path | None = None
        self.port = 0
        self.user = SUPERUSER
        self.password = PASSWORD
        self._admin_conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._reaper: subprocess.Popen[bytes] | None = None

    # --- paths -----------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self._base / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base

    @property
    def log_file(self) -> Path:
        return self._base / "server.log"

    @property
    def _base(self) -> Path:
        if self.base is None:
            raise RuntimeError("the server is not initialised: call start()")
        return self.base

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """initdb on the first call, then start and wait until it accepts connections.

        After stop() or kill() it starts the same data directory on the same port again."""
        first = self.base is None
        if first:
            self._initdb()
        if self.running:
            return
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self._pg_ctl(
                    "start", "-w", "-t", str(int(START_TIMEOUT_S)), "-l", str(self.log_file)
                )
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise PgUnavailableError(
                        f"PostgreSQL did not start; its log:\n{self.log_tail()}"
                    ) from None
                if first and "could not bind" in self.log_tail(5):
                    # Another program took the free port meanwhile; nobody has our URL yet.
                    self._set_port(free_port())
                # After kill(), the old server's shared memory may still be held for a moment.
                time.sleep(0.2)

    def stop(self) -> None:
        """A fast shutdown: sessions are disconnected, the server checkpoints and exits."""
        self._close_admin()
        if self.base is not None and self.running:
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(int(START_TIMEOUT_S)))

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the server and all its processes, as if the machine lost them."""
        pid = self.postmaster_pid()
        if pid is None or not self.running:  # never a pid a stale file names
            return
        self._close_admin()
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while any(_alive(v) for v in victims):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL processes {victims} survived SIGKILL")
            time.sleep(0.02)

    def destroy(self) -> None:
        """Stop the server (killing it if it will not stop) and remove its directory."""
        if self.base is None:
            return
        try:
            self.stop()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.kill()
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
        atexit.unregister(self.destroy)
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait(timeout=10)
            self._reaper = None

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    @property
    def running(self) -> bool:
        pid = self.postmaster_pid()
        # A stale postmaster.pid (after kill) may name a pid reused by another program.
        return pid is not None and _alive(pid) and _command_name(pid) == "postgres"

    def postmaster_pid(self) -> int | None:
        if self.base is None:
            return None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, PermissionError):
            return None
        return int(first) if first.strip().isdigit() else None

    def cpu_seconds(self) -> float:
        """CPU time of the server so far: the postmaster with its reaped children, and the
        live ones (the sessions); 0 when it is not running."""
        pid = self.postmaster_pid()
        if pid is None:
            return 0.0
        total = _cpu_ticks(pid, children=True)
        total += sum(_cpu_ticks(child, children=False) for child in _children(pid))
        return total / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # --- databases -------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        """A postgresql:// URL with the superuser's password, percent-encoded."""
        user = quote(self.user, safe="")
        password = quote(self.password, safe="")
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def create_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, url_or_name: str) -> None:
        """Drop a database made by create_database(), disconnecting whoever still uses it."""
        name = urlsplit(url_or_name).path.lstrip("/") if "://" in url_or_name else url_or_name
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        self._admin().execute(drop)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """One kept connection for the DDL of every test (a scram login costs ~12 ms); a new
        one after a restart or kill closed it."""
        conn = self._admin_conn
        if conn is not None and not conn.closed and not conn.broken:
            with contextlib.suppress(psycopg.OperationalError):
                conn.execute("SELECT 1")
                return conn
            conn.close()
        self._admin_conn = psycopg.connect(self.url(), autocommit=True, connect_timeout=10)
        return self._admin_conn

    def _close_admin(self) -> None:
        if self._admin_conn is not None:
            self._admin_conn.close()
            self._admin_conn = None

    # --- internals -------------------------------------------------------------------------
    def _initdb(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="cpo-pg-"))
        self.base = base
        # A run that ends without its fixtures' teardown must not leave a server behind.
        atexit.register(self.destroy)
        self._reaper = subprocess.Popen(
            ["sh", "-c", REAPER, "pg-reaper", str(os.getpid()), str(self.data_dir), str(base)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the tests, which clean up themselves
        )
        pwfile = base / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        if self._as_root:
            os.chown(base, self._uid, self._gid)
            os.chown(pwfile, self._uid, self._gid)
        self._run(
            str(self._bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        pwfile.unlink()
        settings = {**SETTINGS, "unix_socket_directories": f"'{self.socket_dir}'"}
        conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write("\n# cpo_gateway/bench/pg_server.py\n" + conf)
        self._set_port(free_port())

    def _set_port(self, port: int) -> None:
        """The last `port` line of postgresql.conf wins."""
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write(f"port = {port}\n")
        self.port = port

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", OS_USER, "--", *argv] if self._as_root else list(argv)
        # The server's user may not be able to enter the caller's directory.
        done = subprocess.run(
            command,
            cwd=self._base,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=START_TIMEOUT_S + 30,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, command, stderr=done.stderr
            ) from PgUnavailableError(f"{' '.join(argv[:2])}: {done.stderr.strip()}")


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """A PostgreSQL server of its own for one benchmark: the URL of its `postgres` database
    (the superuser's, who may create databases); stopped and removed afterwards."""
    server = PgServer()
    server.start()
    try:
        yield server.url()
    finally:
        server.destroy()


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new empty database on the server of `url` (its user needs CREATEDB), dropped after."""
    name = f"cpo_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


@contextlib.asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[PgServer]:
    """A PostgreSQL server of its own for one benchmark or soak, removed afterwards."""
    server = PgServer()
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.destroy)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"  # a zombie has exited, its parent has not reaped it yet


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _cpu_ticks(pid: int, *, children: bool) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
    # utime and stime (fields 14 and 15), and cutime and cstime (16, 17) of reaped children
    return sum(int(f) for f in fields[11 : 15 if children else 13])


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
