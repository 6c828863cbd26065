"""The `[storage]` table: where the gateway keeps its state.

`url` absent: SQLite at `<state_dir>/gateway.db` (the embedded default). `sqlite:///path`
(or `sqlite:relative/path`, against the config file's folder): SQLite at that file.
`postgresql://user@host:port/dbname?...` (or `postgres://`): PostgreSQL, for several nodes.
A URL with a password belongs outside the TOML: `url_file` (a systemd credential, say) or
the environment variable STORAGE_URL_ENV, which takes precedence over both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cpo_gateway.tomlcheck import Table

STORAGE_URL_ENV = "CPO_GATEWAY_STORAGE_URL"
_PG_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class StorageConfig:
    url: str = field(repr=False)  # may hold a password
    sqlite_path: Path | None = None  # set for SQLite
    read_connections: int = 3  # PostgreSQL: asynchronous read connections
    connect_timeout_s: float = 30.0  # PostgreSQL: how long start waits for the database

    @property
    def backend(self) -> str:
        return "sqlite" if self.sqlite_path is not None else "postgresql"

    @property
    def describe(self) -> str:
        """Where the data is, for people (never a password)."""
        return str(self.sqlite_path) if self.sqlite_path is not None else redact(self.url)


def is_postgres_url(url: str) -> bool:
    return url.startswith(_PG_SCHEMES)


def redact(url: str) -> str:
    """A PostgreSQL URL without its password or options: postgresql://user@host:port/db."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    user = f"{unquote(parts.username)}@" if parts.username else ""
    host = parts.hostname or "localhost"
    return f"postgresql://{user}{host}{port}{parts.path}"


def parse_storage(
    t: Table | None,
    *,
    default_path: Path,
    env: Mapping[str, str],
    resolve: Callable[[str], Path],
    errors: list[str],
) -> StorageConfig:
    """`t`: the [storage] table (None when absent); `resolve`: a path as the config means it."""
    d = StorageConfig(url="")
    url: str | None = None
    read_connections, connect_timeout = d.read_connections, d.connect_timeout_s
    if t is not None:
        url = t.string("url", None)
        url_file = t.string("url_file", None)
        if url_file:
            p = resolve(url_file)
            try:
                url = p.read_text(encoding="utf-8").strip()
            except OSError as exc:
                t.error(
                    "url_file", "a readable file holding the storage URL", f"{p} ({exc.strerror})"
                )
        read_connections = t.integer("read_connections", d.read_connections, lo=1, hi=64)
        connect_timeout = t.number("connect_timeout_s", d.connect_timeout_s, lo=0.0, hi=3600.0)
        t.finish()
    from_env = env.get(STORAGE_URL_ENV, "").strip()
    if from_env:
        url = from_env
    if not url:
        return StorageConfig(f"sqlite://{default_path}", default_path)
    if is_postgres_url(url):
        return StorageConfig(url, None, int(read_connections), float(connect_timeout))
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        path = Path(rest[2:]) if rest.startswith("//") else resolve(rest)
        if str(path) in ("", "."):
            _problem(
                t, from_env, errors, "a file after sqlite:// (sqlite:///var/lib/x/gateway.db)", url
            )
            return StorageConfig(f"sqlite://{default_path}", default_path)
        return StorageConfig(f"sqlite://{path}", path)
    _problem(t, from_env, errors, "a URL starting with sqlite:// or postgresql://", _scheme(url))
    return StorageConfig(f"sqlite://{default_path}", default_path)


def _scheme(url: str) -> str:
    # Only the scheme: the rest may hold a password.
    return repr(url.split(":", 1)[0] + ":...") if ":" in url else "a value without a scheme"


def _problem(t: Table | None, from_env: str, errors: list[str], expected: str, found: str) -> None:
    if t is None or from_env:
        errors.append(f"{STORAGE_URL_ENV}: expected {expected}, found {found}")
    else:
        t.error("url", expected, found)
