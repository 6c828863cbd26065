"""`cpo-gateway backup FILE [--force]`: a consistent copy of the database, safe while the
gateway runs and writes.

SQLite's online backup API copies the database as of one moment (a read transaction: the
gateway keeps writing into its WAL meanwhile). The copy is written beside FILE with mode
0600 (it holds password hashes and the whitelist), checked with `PRAGMA integrity_check`,
made a single self-contained file (journal mode DELETE) and only then put in place, so FILE
is either the whole copy or not there. An existing FILE is kept unless `--force`.
Restore: README ("Backup and restore").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpo_gateway.store import DatabaseUnusable

EXIT_OK, EXIT_CANTCREATE = 0, 73
# Tables whose row counts are printed, so the operator sees what the copy holds.
_COUNTED = ("chargers", "sessions", "transactions", "whitelist", "outbox")


def add_parser(
    sub: Any,
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    bk = with_config(
        sub.add_parser("backup", help="copy the database, consistently, while it runs")
    )
    bk.add_argument("file", metavar="FILE", help="where to write the copy")
    bk.add_argument("--force", action="store_true", help="replace FILE if it exists")
    bk.set_defaults(fn=cmd_backup)


def cmd_backup(args: argparse.Namespace) -> int:
    from cpo_gateway.cli import _UNUSABLE, _load

    cfg = _load(args.config)
    target = Path(args.file)
    source = cfg.storage.sqlite_path
    if source is None:
        print(
            f"error: the database is PostgreSQL ({cfg.storage.describe}): back it up with "
            "PostgreSQL's own tools (pg_dump, or a base backup with WAL archiving)",
            file=sys.stderr,
        )
        return EXIT_CANTCREATE
    try:
        counts = backup(source, target, force=args.force)
    except FileExistsError:
        print(f"error: {target} exists (give --force to replace it)", file=sys.stderr)
        return EXIT_CANTCREATE
    except OSError as exc:
        print(f"error: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANTCREATE
    except _UNUSABLE as exc:
        print(f"error: database not usable: {exc}", file=sys.stderr)
        return EXIT_CANTCREATE
    rows = ", ".join(f"{table} {n}" for table, n in counts.items())
    size = target.stat().st_size
    print(f"wrote {target} ({size} bytes, from {source}): {rows}")
    return EXIT_OK


def backup(source: Path, target: Path, *, force: bool) -> dict[str, int]:
    """Copy `source` to `target`; the row counts of the copy's main tables."""
    if not source.is_file() or source.stat().st_size == 0:
        raise DatabaseUnusable(f"{source}: no database there")
    if target.exists() and not force:
        raise FileExistsError(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        counts = _copy(source, tmp)
        if force:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if FILE appeared meanwhile: never clobbered
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return counts


def _copy(source: Path, tmp: Path) -> dict[str, int]:
    # Read-write open without creating (mode=rw): a WAL reader may need to write the -shm.
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # all pages in one step: one consistent snapshot
            dst.execute("PRAGMA journal_mode = DELETE")
            check = dst.execute("PRAGMA integrity_check").fetchall()
            if check != [("ok",)]:
                raise sqlite3.DatabaseError(f"the copy fails integrity_check: {check[:3]}")
            counts = {
                t: int(dst.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])  # noqa: S608
                for t in _COUNTED
            }
        finally:
            dst.close()
    finally:
        src.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    return counts
