"""Storage: the one package that holds SQL. The rest sees repository methods.

Two backends behind one repository interface (store/db.py): SQLite, the embedded default,
and PostgreSQL for several nodes. `open_database` picks one from the `[storage]` config.
"""

from __future__ import annotations

from cpo_gateway.config_storage import StorageConfig
from cpo_gateway.store.db import Database, DatabaseUnreachable, DatabaseUnusable, SchemaTooNew
from cpo_gateway.store.links import LinksRepo
from cpo_gateway.store.outbox import OutboxRepo
from cpo_gateway.store.outbox_claims import DEFAULT_CLAIM_S, OutboxClaims, default_node_id
from cpo_gateway.store.owed_reads import OwedReadsRepo
from cpo_gateway.store.pg_db import PostgresDatabase
from cpo_gateway.store.registry import RegistryRepo
from cpo_gateway.store.reports import ReportsRepo
from cpo_gateway.store.reservations import ReservationsRepo
from cpo_gateway.store.security import SecurityRepo
from cpo_gateway.store.sessions import ChargingRepo
from cpo_gateway.store.sqlite_db import SqliteDatabase
from cpo_gateway.store.steps import StepsRepo
from cpo_gateway.store.tokens import TokensRepo


class Store(
    ChargingRepo,
    LinksRepo,
    OutboxRepo,
    OutboxClaims,
    OwedReadsRepo,
    RegistryRepo,
    ReportsRepo,
    ReservationsRepo,
    SecurityRepo,
    StepsRepo,
    TokensRepo,
):
    """Every repository over one database. `node` names this gateway node in the rows it
    claims (default: $CPO_GATEWAY_NODE_ID, else the host name)."""

    def __init__(self, db: Database, *, node: str | None = None) -> None:
        self.db = db
        self.node = node or default_node_id()
        self.claims_expired = 0


def open_database(storage: StorageConfig) -> Database:
    """The database `storage` names, not yet opened."""
    if storage.sqlite_path is not None:
        return SqliteDatabase(storage.sqlite_path)
    return PostgresDatabase(
        storage.url,
        read_connections=storage.read_connections,
        connect_timeout_s=storage.connect_timeout_s,
    )


__all__ = [
    "DEFAULT_CLAIM_S",
    "OutboxClaims",
    "Database",
    "DatabaseUnreachable",
    "DatabaseUnusable",
    "PostgresDatabase",
    "SchemaTooNew",
    "SqliteDatabase",
    "Store",
    "default_node_id",
    "open_database",
]
