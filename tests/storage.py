"""The database a test opens itself: PostgreSQL when the run is on it, SQLite otherwise.

A run on PostgreSQL (`--backend postgresql`) gives every test a fresh database in the
environment variable the gateway reads (config_storage.STORAGE_URL_ENV); a test that opens
a store without a gateway opens the same one.
"""

from __future__ import annotations

import os
from pathlib import Path

from cpo_gateway.config_storage import STORAGE_URL_ENV
from cpo_gateway.store import Database, PostgresDatabase, SqliteDatabase


def make_database(path: Path) -> Database:
    """The test's database: `path` (SQLite) unless the run is on PostgreSQL."""
    url = os.environ.get(STORAGE_URL_ENV, "")
    if url:
        return PostgresDatabase(url, connect_timeout_s=5.0)
    return SqliteDatabase(path)


def on_postgres() -> bool:
    return bool(os.environ.get(STORAGE_URL_ENV))
