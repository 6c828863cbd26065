"""The core: one object the charger side and the EMP side call into.

It speaks of chargers, sessions, authorizations and statuses; adapters translate protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.auth import Authorizer, EmpPolicy
from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.delivery import Deliverer
from cpo_gateway.bridge.evidence import Evidence
from cpo_gateway.bridge.held import Released, release_held
from cpo_gateway.bridge.locallist import LocalListPusher
from cpo_gateway.bridge.model import (
    AuthDecision,
    BootInfo,
    MeterReport,
    StartResult,
    StatusReport,
    StopResult,
    TransactionStart,
    TransactionStep,
    TransactionStop,
    User,
)
from cpo_gateway.bridge.ports import ChargerControl, EmpLink, TxRecord
from cpo_gateway.bridge.reconcile import CloseResult, Reconciler
from cpo_gateway.bridge.remote import Remote
from cpo_gateway.bridge.station_sync import changed_connectors, sync_stations
from cpo_gateway.bridge.status import StatusTracker
from cpo_gateway.bridge.storage import StorePort
from cpo_gateway.bridge.transactions import Charging

log = logs.get(__name__)


@dataclass(frozen=True, slots=True)
class Partner:
    """An EMP as the core sees it."""

    name: str
    partner_identifier: str
    online_authorization: bool
    accept_when_unreachable: bool
    verify_timeout_s: float
    concurrency: int


@dataclass(frozen=True, slots=True)
class CoreSettings:
    id_tag_strategy: str = "evco"
    pending_start_timeout_s: float = 90.0
    status_debounce_s: float = 2.0
    offline_grace_s: float = 60.0
    cdr_on_start: bool = False
    auth_cache_ttl_s: float = 300.0
    request_deadline_s: float = 10.0
    base_backoff_s: float = 2.0
    max_backoff_s: float = 3600.0
    retry_window_s: float = 48 * 3600.0
    batch_size: int = 500
    ghost_grace_s: float = 300.0


class Core:
    """The core of the gateway: what chargers report becomes sessions, CDRs and statuses owed
    to EMPs; what EMPs ask becomes commands to chargers.

    Owns the catalogue, the authorization chain, the remote starts and stops, the status
    engine, the local lists and the outbox's delivery loop; it reaches storage, chargers and
    EMPs only through the ports it is given. It never names a protocol, a storage engine or
    a scheduler, never answers a peer before the commit that holds what it was told, and
    never lets one EMP's failure hold up another's deliveries.
    """

    def __init__(
        self,
        store: StorePort,
        catalogue: Catalogue,
        partners: Sequence[Partner],
        chargers: ChargerControl,
        emp_link: EmpLink,
        settings: CoreSettings,
        *,
        connected: Callable[[], Sequence[str]],
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.settings = settings
        self.partners = {p.name: p for p in partners}
        self._partner_ids = {p.name: p.partner_identifier for p in partners}
        self._clock = clock
        self._spawn = spawn
        self.authorizer = Authorizer(
            [
                EmpPolicy(
                    p.name, p.online_authorization, p.accept_when_unreachable, p.verify_timeout_s
                )
                for p in partners
            ],
            emp_link,
            store.whitelist_partners,
            cache_ttl_s=settings.auth_cache_ttl_s,
            clock=clock,
        )
        self.evidence = Evidence(catalogue, clock)
        self.status = StatusTracker(
            store,
            catalogue,
            self._partner_ids,
            debounce_s=settings.status_debounce_s,
            offline_grace_s=settings.offline_grace_s,
            clock=clock,
            evidence=self.evidence,
        )
        self.charging = Charging(
            store,
            catalogue,
            self.authorizer,
            self._partner_ids,
            cdr_on_start=settings.cdr_on_start,
            clock=clock,
            stop_late_start=self._stop_late_start,
            evidence=self.evidence,
        )
        self.remote = Remote(
            store,
            catalogue,
            chargers,
            self.authorizer,
            self.status.state,
            id_tag_strategy=settings.id_tag_strategy,
            pending_timeout_s=settings.pending_start_timeout_s,
            deadline_s=max(0.5, settings.request_deadline_s - 0.5),
            clock=clock,
        )
        self.delivery = Deliverer(
            store,
            emp_link,
            station_of_evse=self._station_of_evse,
            base_backoff_s=settings.base_backoff_s,
            max_backoff_s=settings.max_backoff_s,
            retry_window_s=settings.retry_window_s,
            batch_size=settings.batch_size,
            concurrency={p.name: p.concurrency for p in partners},
            clock=clock,
        )
        self.local_list = LocalListPusher(store, chargers, connected, clock=clock)
        self.reconciler = Reconciler(
            store,
            chargers,
            self.charging,
            self.status.state,
            self.evidence,
            grace_s=settings.ghost_grace_s,
            clock=clock,
        )

    def _stop_late_start(self, charge_point: str, transaction_id: int, session_id: str) -> None:
        self._spawn(
            self.remote.stop_late_start(charge_point, transaction_id, session_id), "late-start-stop"
        )

    def _station_of_evse(self, evse_id: str) -> str | None:
        station = self.catalogue.station_of(evse_id)
        return None if station is None else station.id

    async def start(self) -> None:
        await self.store.forget_presence(self._clock())
        await self.status.load()
        await self.remote.restore()
        await sync_stations(self.store, self.catalogue, self._partner_ids, self._clock)

    async def reload_catalogue(self, catalogue: Catalogue) -> list[str]:
        """Adopt a new stations file and queue station-posts for what changed (new, changed,
        removed stations: as at start). Refused, with the problems and nothing changed, when
        a station an EMP already has changed its connectors (OIOI forbids it)."""
        problems: list[str] = []
        for emp in self.partners:
            for problem in changed_connectors(catalogue, await self.store.posted_stations(emp)):
                problems.append(f"{problem} (EMP {emp})")
        if problems:
            return problems
        self.catalogue.adopt(catalogue)
        self.status.catalogue_changed()
        await sync_stations(self.store, self.catalogue, self._partner_ids, self._clock)
        return []

    # --- the charger side ----------------------------------------------------------------------
    def is_known_charger(self, charge_point_id: str) -> bool:
        return charge_point_id in self.catalogue.charge_point_ids()

    async def password_hash(self, charge_point_id: str) -> str | None:
        stored = await self.store.password_hash(charge_point_id)
        if stored:
            return stored
        auth = self.catalogue.charger_auth(charge_point_id)
        return None if auth is None else auth.password_hash

    def security_profile(self, charge_point_id: str) -> int:
        auth = self.catalogue.charger_auth(charge_point_id)
        return 0 if auth is None else auth.security_profile

    def charger_connected(self, charge_point_id: str) -> None:
        self.status.connected(charge_point_id)
        self._record_presence(charge_point_id, True)

    def charger_disconnected(self, charge_point_id: str) -> None:
        self.status.disconnected(charge_point_id)
        self._record_presence(charge_point_id, False)

    def _record_presence(self, charge_point_id: str, connected: bool) -> None:
        write = self.store.record_presence(charge_point_id, connected, self._clock())
        self._spawn(write, f"presence-{charge_point_id}")

    async def boot(self, info: BootInfo) -> bool:
        """Record a BootNotification; True when the charger is accepted (known)."""
        accepted = self.is_known_charger(info.charge_point_id)
        status = "Accepted" if accepted else "Pending"
        await self.store.record_boot(info, status, rfc3339(self._clock()))
        self.status.booted(info.charge_point_id)
        if not accepted:
            log.warning(
                "charger.unknown_boot", charge_point_id=info.charge_point_id, vendor=info.vendor
            )
        return accepted

    async def authorize(self, charge_point_id: str, id_tag: str) -> AuthDecision:
        return await self.authorizer.authorize(id_tag)

    async def start_transaction(self, start: TransactionStart) -> tuple[int, AuthDecision]:
        return await self.charging.start(start)

    async def stop_transaction(self, stop: TransactionStop) -> AuthDecision | None:
        return await self.charging.stop(stop)

    async def meter_values(self, report: MeterReport) -> None:
        await self.charging.meter(report)

    async def step_seen(self, step: TransactionStep) -> bool:
        return await self.charging.step_seen(step)

    async def record_step(self, step: TransactionStep) -> None:
        await self.charging.record_step(step)

    async def charger_transaction(self, charge_point_id: str, charger_key: str) -> TxRecord | None:
        """The transaction a charger named `charger_key`, if the gateway has seen it."""
        return await self.store.transaction_by_key(charge_point_id, charger_key)

    async def start_earlier(self, tx_id: int, started_at: str) -> None:
        """A transaction's own start report came after a later one had begun it: its time
        stands (the session's interval runs from when the charger began)."""
        await self.store.start_earlier(tx_id, started_at)

    async def identify_start(self, tx_id: int, id_tag: str) -> AuthDecision | None:
        """A transaction begun by a report without an idTag learns it from its own start
        report: decided by the chain, billed to the partner it names (None: it had one)."""
        return await self.charging.identify(tx_id, id_tag)

    async def open_charger_keys(self, charge_point_id: str) -> list[tuple[str, int]]:
        """(the charger's own name, connector) of its transactions the gateway holds open."""
        return [
            (tx.charger_key, tx.connector)
            for tx, _ in await self.store.open_transactions()
            if tx.charge_point == charge_point_id and tx.charger_key is not None
        ]

    def connector_by_address(self, charge_point_id: str, evse: int, evse_connector: int) -> int:
        """The connector number of a connector a charger names by EVSE and connector on it;
        unknown addresses read as the EVSE number (the stations file's default mapping)."""
        conn = self.catalogue.connector_by_address(charge_point_id, evse, evse_connector)
        return evse if conn is None else conn.connector

    def address_of(self, charge_point_id: str, connector: int) -> tuple[int, int]:
        """(EVSE, connector on it) of a connector number: the inverse of the above."""
        conn = self.catalogue.connector_at(charge_point_id, connector)
        return (connector, 1) if conn is None else conn.evse_address

    async def status_notification(self, report: StatusReport) -> None:
        await self.status.report(report)

    async def close_session(self, session_id: str, reason: str) -> CloseResult:
        """Ops: close a session the charger will not end, with a CDR of the energy known."""
        return await self.reconciler.close_session(session_id, reason)

    async def release_held_cdr(
        self, session_id: str, *, kwh: float | None = None, stop: str | None = None
    ) -> Released:
        """Ops: queue a CDR held for review, as it is or corrected (judged again)."""
        return await release_held(
            self.store,
            self.catalogue,
            self._partner_ids,
            session_id,
            clock=self._clock,
            kwh=kwh,
            stop=stop,
        )

    # --- the EMP side --------------------------------------------------------------------------
    async def session_start(self, emp: str, user: User, evse_id: str) -> StartResult:
        return await self.remote.start(emp, user, evse_id)

    async def session_stop(self, emp: str, evse_id: str, session_id: str | None) -> StopResult:
        return await self.remote.stop(emp, evse_id, session_id)

    async def rfid_post(self, emp: str, uids: Sequence[str]) -> tuple[int, int]:
        """Replace an EMP's whitelist; returns (new UIDs, total)."""
        new, total = await self.store.replace_whitelist(emp, uids, rfc3339(self._clock()))
        self.authorizer.clear_cache()
        log.info("whitelist.replaced", emp=emp, new=new, total=total)
        self._spawn(self.local_list.push_all(), "locallist-push-all")
        return new, total
