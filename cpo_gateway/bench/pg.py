"""A throwaway PostgreSQL for a benchmark, from Debian's packages (scripts/services-setup).

initdb into a fresh temporary directory, a free loopback port, trust
authentication (nothing but this run reaches it), fsync off: the data lives for one run.
As root, the server runs as the package's `postgres` OS user. `scripts/bench --pg-url`
uses a server of your own instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

OS_USER = "postgres"
USER = "bench"
TIMEOUT_S = 60


def bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin with initdb and pg_ctl."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    return next((b for b in found if (b / "initdb").is_file() and (b / "pg_ctl").is_file()), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a server in a temporary directory of its own (the server's OS user must be able
    to enter it); yield the URL of its `postgres` database; stop it and remove the files."""
    tools = bindir()
    if tools is None:
        raise RuntimeError("PostgreSQL is not installed: run scripts/services-setup")
    base = Path(tempfile.mkdtemp(prefix="cpo-bench-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, OS_USER, OS_USER)
        prefix = ["runuser", "-u", OS_USER, "--"]
    data, port = base / "data", _free_port()

    def run(*argv: str) -> None:
        done = subprocess.run(
            [*prefix, *argv], cwd=base, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name}: {done.stderr.strip() or done.stdout}")

    run(str(tools / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "--no-sync")
    options = (
        f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} "
        "-c fsync=off -c full_page_writes=off -c max_connections=200"
    )
    ctl = [str(tools / "pg_ctl"), "-D", str(data)]
    try:
        run(*ctl, "-o", options, "-l", str(base / "server.log"), "-w", "start")
        try:
            yield f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        finally:
            run(*ctl, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new empty database on the server of `url` (its user needs CREATEDB), dropped after."""
    name = f"cpo_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))
