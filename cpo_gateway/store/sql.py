"""What repository code writes its SQL against, whichever database holds the data.

A write is a plain function of one connection (`Conn`) run inside the group commit
(Database.run_write): sqlite3's own connection, or PostgreSQL's behind `PgConn`, which takes
the same SQL. The SQL the repositories write is the common part of both dialects:
`?` and `:name` placeholders, `INSERT ... ON CONFLICT DO NOTHING` (never `INSERT OR ...`),
`RETURNING` (never `lastrowid`), `CAST(? AS TEXT) IS NULL` for an optional parameter (a bare
`? IS NULL` has no type in PostgreSQL), text kept as text. The rare statement that must
differ asks `is_postgres(conn)`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import psycopg

Params = Sequence[Any] | Mapping[str, Any]

# A unique or foreign key refused the row: the same exception to catch on either backend.
IntegrityErrors: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
# The database away or refusing for now (locked, disk, connection lost): worth trying again.
UnavailableErrors: tuple[type[Exception], ...] = (
    sqlite3.OperationalError,
    psycopg.OperationalError,
)


class Row(Protocol):
    """A result row: by column name or by position (sqlite3.Row and PgRow)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """The connection a write runs on, inside its transaction."""

    def execute(self, sql: str, parameters: Params = (), /) -> Any: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Params], /) -> Any: ...


def is_postgres(conn: object) -> bool:
    return not isinstance(conn, sqlite3.Connection)
