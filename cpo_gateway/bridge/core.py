"""The core: one object the charger side and the EMP side call into.

It speaks of chargers, sessions, authorizations and statuses; adapters translate protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.auth import Authorizer, EmpPolicy
from cpo_gateway.bridge.catalogue import Catalogue, Connector
from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.commands import Commands
from cpo_gateway.bridge.core_ports import (
    ChargerSide,
    ClusterSide,
    CoreCounters,
    EmpSide,
    OperatorSide,
    Pruned,
    ScheduledWork,
    WhitelistReplaced,
)
from cpo_gateway.bridge.delivery import Deliverer
from cpo_gateway.bridge.evidence import Evidence
from cpo_gateway.bridge.held import Released, release_held
from cpo_gateway.bridge.locallist import ListState, LocalListPusher
from cpo_gateway.bridge.model import (
    AuthDecision,
    AuthPath,
    AuthStatus,
    BootInfo,
    CommandStatus,
    DeliveryStatus,
    LateReport,
    MeterReport,
    Started,
    StartResult,
    StatusReport,
    StopResult,
    TransactionStart,
    TransactionStep,
    TransactionStop,
    User,
)
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.pending import PendingStarts
from cpo_gateway.bridge.ports import ChargerControl, EmpLink, TxRecord
from cpo_gateway.bridge.reconcile import CloseResult, Reconciler
from cpo_gateway.bridge.remote import Remote
from cpo_gateway.bridge.settings import CoreSettings, Partner
from cpo_gateway.bridge.station_sync import changed_connectors, sync_stations
from cpo_gateway.bridge.status import StatusTracker
from cpo_gateway.bridge.storage import StorePort
from cpo_gateway.bridge.tariff_sync import sync_tariffs
from cpo_gateway.bridge.tokens import Listings, TokenBook
from cpo_gateway.bridge.transactions import Charging

log = logs.get(__name__)


class Core(ChargerSide, EmpSide, ScheduledWork, OperatorSide, CoreCounters, ClusterSide):
    """The core of the gateway: what chargers report becomes sessions, CDRs and statuses owed
    to EMPs; what EMPs ask becomes commands to chargers.

    Owns the catalogue, the authorization chain, the remote starts and stops, the status
    engine, the local lists and the outbox's delivery loop; it reaches storage, chargers and
    EMPs only through the ports it is given. It never names a protocol, a storage engine or
    a scheduler, never answers a peer before the commit that holds what it was told, and
    never lets one EMP's failure hold up another's deliveries.

    Each consumer sees it through its own port (bridge/core_ports.py): the methods below
    are those ports, so no adapter reaches into the parts.
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
        # Per kind, the EMPs owed it: nothing is queued for an EMP whose terms do not want it.
        self._owed_to = {
            kind: {p.name: p.partner_identifier for p in partners if p.owed(kind)} for kind in Owed
        }
        self._clock = clock
        self._spawn = spawn
        self._presence_watchers: list[Callable[[str, bool], None]] = []
        self._authorization_watchers: list[Callable[[bool], None]] = []
        self.pending = PendingStarts(clock)
        self.authorizer = Authorizer(
            [
                EmpPolicy(
                    p.name, p.online_authorization, p.accept_when_unreachable, p.verify_timeout_s
                )
                for p in partners
            ],
            emp_link,
            Listings(store, store),
            self.pending,
            cache_ttl_s=settings.sessions.auth_cache_ttl_s,
            clock=clock,
        )
        self.evidence = Evidence(catalogue, clock)
        self.status = StatusTracker(
            store,
            catalogue,
            self._owed_to[Owed.EVSE_STATUS],
            detailed=frozenset(p.name for p in partners if p.offline_detail),
            debounce_s=settings.sessions.status_debounce_s,
            offline_grace_s=settings.offline_grace_s,
            clock=clock,
            evidence=self.evidence,
            connected_anywhere=chargers.is_connected,
        )
        self.charging = Charging(
            store,
            catalogue,
            self.authorizer,
            self.pending,
            self._owed_to[Owed.CDR],
            steps=store,
            cdr_on_start=settings.sessions.cdr_on_start,
            clock=clock,
            stop_late_start=self._stop_late_start,
            evidence=self.evidence,
            follows=self._owed_to[Owed.SESSION],
            update_interval_s=settings.sessions.update_interval_s,
        )
        self.remote = Remote(
            store,
            catalogue,
            chargers,
            self.pending,
            self.status.state,
            id_tag_strategy=settings.sessions.id_tag_strategy,
            pending_timeout_s=settings.sessions.pending_start_timeout_s,
            deadline_s=max(0.5, settings.request_deadline_s - 0.5),
            clock=clock,
        )
        self.delivery = Deliverer(
            store,
            emp_link,
            station_of_evse=self._station_of_evse,
            base_backoff_s=settings.outbox.base_backoff_s,
            max_backoff_s=settings.outbox.max_backoff_s,
            retry_window_s=settings.outbox.retry_window_s,
            batch_size=settings.outbox.batch_size,
            concurrency={p.name: p.concurrency for p in partners},
            clock=clock,
            claim_s=settings.outbox.claim_s,
        )
        # A partner's commands answer at once and report the charger's answer later.
        self.commands = Commands(
            store,
            catalogue,
            chargers,
            self.remote,
            deadline_s=max(0.5, settings.request_deadline_s - 0.5),
            spawn=spawn,
            clock=clock,
        )
        self.local_list = LocalListPusher(store, chargers, connected, clock=clock)
        self.tokens = TokenBook(
            store,
            changed=self._authorization_changed,
            push_all=self.local_list.push_all,
            spawn=spawn,
            clock=clock,
        )
        self.reconciler = Reconciler(
            store,
            chargers,
            self.charging,
            self.status.state,
            self.evidence,
            grace_s=settings.sessions.ghost_grace_s,
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
        await sync_stations(self.store, self.catalogue, self._owed_to[Owed.STATION], self._clock)
        await sync_tariffs(self.store, self.catalogue, self._owed_to[Owed.TARIFF], self._clock)

    async def reload_catalogue(self, catalogue: Catalogue) -> list[str]:
        """Adopt a new stations file and queue station data for what changed (new, changed,
        removed stations: as at start). Refused, with the problems and nothing changed, when
        a station an EMP already has changed its connectors and that EMP's terms forbid it."""
        problems: list[str] = []
        for emp, partner in self.partners.items():
            if not partner.fixed_connectors:
                continue
            for problem in changed_connectors(catalogue, await self.store.posted_stations(emp)):
                problems.append(f"{problem} (EMP {emp})")
        if problems:
            return problems
        self.catalogue.adopt(catalogue)
        self.status.catalogue_changed()
        await sync_stations(self.store, self.catalogue, self._owed_to[Owed.STATION], self._clock)
        await sync_tariffs(self.store, self.catalogue, self._owed_to[Owed.TARIFF], self._clock)
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
        for watcher in self._presence_watchers:
            watcher(charge_point_id, True)

    def charger_disconnected(self, charge_point_id: str) -> None:
        self.status.disconnected(charge_point_id)
        self._record_presence(charge_point_id, False)
        for watcher in self._presence_watchers:
            watcher(charge_point_id, False)

    # --- the cluster ---------------------------------------------------------------------------
    def watch(
        self,
        on_presence: Callable[[str, bool], None],
        on_authorization: Callable[[bool], None],
    ) -> None:
        self._presence_watchers.append(on_presence)
        self._authorization_watchers.append(on_authorization)

    def _authorization_changed(self, whole_list: bool = False) -> None:
        """Whitelists or tokens changed here (committed): forget, and tell the watchers."""
        self.authorizer.clear_cache()
        for watcher in self._authorization_watchers:
            watcher(whole_list)

    def authorization_changed_elsewhere(self, whole_list: bool) -> None:
        self.authorizer.clear_cache()
        if whole_list:
            self._spawn(self.local_list.push_all(), "locallist-push-all")

    async def relearn_pending_starts(self) -> None:
        await self.remote.restore()

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
        place = self.catalogue.place_of(charge_point_id)
        return await self.authorizer.authorize(id_tag, place=place)

    async def start_transaction(self, start: TransactionStart) -> Started:
        return await self.charging.start(start)

    async def stop_transaction(self, stop: TransactionStop) -> AuthDecision | None:
        return await self.charging.stop(stop)

    async def meter_values(self, report: MeterReport) -> None:
        await self.charging.meter(report)

    async def record_step(self, step: TransactionStep) -> None:
        await self.charging.record_step(step)

    async def charger_transaction(self, charge_point_id: str, charger_key: str) -> TxRecord | None:
        """The transaction a charger named `charger_key`, if the gateway has seen it."""
        return await self.store.transaction_by_key(charge_point_id, charger_key)

    async def remote_start_tag(self, charge_point_id: str, remote_ref: int) -> str | None:
        """A start report naming only the remote start's number is bound by its idTag, as
        one that carries it: the same pending, late and card rules follow."""
        return await self.store.remote_start_tag(charge_point_id, remote_ref)

    async def start_earlier(self, tx_id: int, started_at: str) -> None:
        """A transaction's own start report came after a later one had begun it: its time
        stands (the session's interval runs from when the charger began)."""
        await self.store.start_earlier(tx_id, started_at)

    async def identify_start(self, tx_id: int, id_tag: str) -> AuthDecision | None:
        """A transaction begun by a report without an idTag learns it from its own start
        report: decided by the chain, billed to the partner it names (None: it had one)."""
        return await self.charging.identify(tx_id, id_tag)

    async def late_report(self, report: LateReport) -> AuthDecision | None:
        """A Started or Updated of a transaction whose Ended came first: fills it in, and
        releases a CDR held for it (Charging.late)."""
        return await self.charging.late(report)

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
            self._owed_to[Owed.CDR],
            session_id,
            clock=self._clock,
            kwh=kwh,
            stop=stop,
            follows=self._owed_to[Owed.SESSION],
        )

    # --- the EMP side --------------------------------------------------------------------------
    async def remote_start(self, emp: str, user: User, evse_id: str) -> StartResult:
        return await self.remote.start(emp, user, evse_id)

    async def remote_stop(self, emp: str, evse_id: str, session_id: str | None) -> StopResult:
        return await self.remote.stop(emp, evse_id, session_id)

    async def set_whitelist(self, emp: str, uids: Sequence[str]) -> WhitelistReplaced:
        """Replace an EMP's whitelist, then push it to the chargers in a task of its own."""
        new, total = await self.store.replace_whitelist(emp, uids, rfc3339(self._clock()))
        self._authorization_changed(whole_list=True)
        log.info("whitelist.replaced", emp=emp, new=new, total=total)
        self._spawn(self.local_list.push_all(), "locallist-push-all")
        return WhitelistReplaced(new, total)

    async def push_local_list(self, charge_point_id: str) -> CommandStatus | None:
        return await self.local_list.push(charge_point_id, fresh=True)

    # --- the scheduled work --------------------------------------------------------------------
    @property
    def delivering_to(self) -> tuple[str, ...]:
        return self.delivery.emps

    @property
    def ghost_grace_s(self) -> float:
        return self.reconciler.grace_s

    async def deliver(self, emp: str) -> int:
        """One pass over one EMP's due outbox rows; returns how many were delivered."""
        return await self.delivery.tick_emp(emp)

    async def deliver_all(self) -> int:
        return await self.delivery.tick()

    async def flush_statuses(self, *, force: bool = False) -> int:
        return await self.status.flush(force=force)

    async def expire_pending_starts(self) -> int:
        return await self.remote.expire_pending()

    async def push_local_lists(self) -> int:
        return await self.local_list.push_all()

    async def reconcile_ghosts(self) -> int:
        return await self.reconciler.run()

    async def prune(self, before: float) -> Pruned:
        """Forget delivered outbox rows and ignored statuses older than `before` (epoch s)."""
        return Pruned(
            await self.store.prune_delivered(before),
            await self.store.prune_ignored_statuses(before),
        )

    async def resume_delivery(self, emp: str) -> None:
        """Our key for `emp` changed: its paused messages are due at once."""
        await self.delivery.resume(emp)

    # --- the operators' views ------------------------------------------------------------------
    def charge_point_ids(self) -> frozenset[str]:
        return self.catalogue.charge_point_ids()

    def connectors(self) -> Iterator[Connector]:
        return self.catalogue.connectors()

    @property
    def paused_emps(self) -> Mapping[str, str]:
        return self.delivery.paused

    # --- the counters /metrics reads -----------------------------------------------------------
    @property
    def delivery_results(self) -> Mapping[tuple[str, str, DeliveryStatus], int]:
        return self.delivery.results

    @property
    def authorization_decisions(self) -> Mapping[tuple[AuthPath, AuthStatus], int]:
        return self.authorizer.decisions

    @property
    def local_list_outcomes(self) -> Mapping[str, int]:
        return self.local_list.outcomes

    async def local_list_states(self) -> Mapping[ListState, int]:
        return await self.local_list.states()
