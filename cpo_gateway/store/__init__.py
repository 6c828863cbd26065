"""SQLite storage: the one package that holds SQL. The rest sees repository methods."""

from __future__ import annotations

from cpo_gateway.store.db import Database, DatabaseUnusable, SchemaTooNew
from cpo_gateway.store.links import LinksRepo
from cpo_gateway.store.outbox import OutboxRepo
from cpo_gateway.store.owed_reads import OwedReadsRepo
from cpo_gateway.store.registry import RegistryRepo
from cpo_gateway.store.reports import ReportsRepo
from cpo_gateway.store.reservations import ReservationsRepo
from cpo_gateway.store.security import SecurityRepo
from cpo_gateway.store.sessions import ChargingRepo
from cpo_gateway.store.steps import StepsRepo
from cpo_gateway.store.tokens import TokensRepo


class Store(
    ChargingRepo,
    LinksRepo,
    OutboxRepo,
    OwedReadsRepo,
    RegistryRepo,
    ReportsRepo,
    ReservationsRepo,
    SecurityRepo,
    StepsRepo,
    TokensRepo,
):
    """Every repository over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db


__all__ = ["Database", "DatabaseUnusable", "SchemaTooNew", "Store"]
