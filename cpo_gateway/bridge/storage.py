"""The storage the core needs (implemented by store/). Typed so the core never sees SQL.

One port per consumer, so a fake of one is small: each part of the core takes the port of
what it stores (`TransactionStore` for Charging, `DeliveryStore` for the Deliverer, ...);
`StorePort` is their union, given to Core. `OpsStore` is what the operators' tools use
beside the core, `SecurityStore` what the chargers' certificate service records. The
concrete store (store/) implements them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cpo_gateway.bridge.model import (
    AuthDecision,
    BootInfo,
    EnergySample,
    LateReport,
    Listing,
    PartnerToken,
    TokensReplaced,
    TransactionStart,
    TransactionStep,
    TransactionStop,
)
from cpo_gateway.bridge.ports import (
    LocalListRecord,
    NewOutbox,
    OutboxItem,
    OutboxStat,
    Outgoing,
    PostedStation,
    Recorded,
    Reservation,
    ReservationState,
    SessionRecord,
    SessionState,
    TxRecord,
)

OutboxBuilder = Callable[[TxRecord, SessionRecord], Sequence[NewOutbox]]
# For a stop: the CDR rows, or a reason to hold the session as needs_review (same commit).
StopOutbox = Callable[[TxRecord, SessionRecord], Outgoing]


class StorageUnavailable(RuntimeError):
    """The database cannot be reached or cannot commit just now (a restart, a network cut,
    a full disk): what was asked was not done, and may be asked again later."""


@dataclass(frozen=True, slots=True)
class LateRecorded:
    """An ended transaction and its session after a late report filled them in; `released`:
    this commit queued the CDR that had been held for the report."""

    tx: TxRecord
    session: SessionRecord
    released: bool


class SessionReads(Protocol):
    """A session and its transaction as stored, and the one state change every session
    flow makes (a conditional one: `only_from` loses a race instead of overwriting)."""

    async def session(self, session_id: str) -> SessionRecord | None: ...

    async def transaction(self, tx_id: int) -> TxRecord | None: ...

    async def set_session_state(
        self,
        session_id: str,
        state: SessionState,
        detail: str = "",
        *,
        only_from: SessionState | None = None,
        settles: Sequence[NewOutbox] = (),
    ) -> bool:
        """`settles`: outbox rows owed for later, rewritten in the same commit when the
        state changed (see CommandStore.settle)."""
        ...


class TransactionStore(SessionReads, Protocol):
    """What Charging (bridge/transactions.py) records of the chargers' transaction messages."""

    async def find_start(self, start: TransactionStart) -> TxRecord | None: ...

    async def record_start(
        self,
        start: TransactionStart,
        *,
        bind_pending: bool,
        new_session: SessionRecord,
        outbox: OutboxBuilder,
        now: float,
        late_session: SessionRecord | None = None,
    ) -> Recorded: ...

    async def record_stop(
        self,
        stop: TransactionStop,
        *,
        orphan_session: Callable[[], SessionRecord | None],
        outbox: StopOutbox,
        now: float,
        session_detail: str | None = None,
    ) -> Recorded | None: ...

    async def record_meter(
        self,
        charge_point: str,
        transaction_id: int,
        samples: Sequence[EnergySample],
        *,
        outbox: OutboxBuilder | None = None,
        now: float = 0.0,
    ) -> None:
        """Fold readings into a transaction; with `outbox`, queue what it builds from the
        updated transaction and its session in the same commit."""
        ...

    async def transaction_by_key(self, charge_point: str, charger_key: str) -> TxRecord | None:
        """The transaction a charger that names its own transactions called `charger_key`."""
        ...

    async def start_earlier(self, tx_id: int, started_at: str) -> None: ...

    async def identify_start(
        self, tx_id: int, id_tag: str, user_id: str, decision: AuthDecision
    ) -> bool:
        """Give a transaction begun without an idTag the one its start report names (False:
        it had one already)."""
        ...


class StepStore(Protocol):
    """The numbered reports of charger-named transactions, as Charging keeps them: a resent
    one is recognised by (charger, key, sequence), and a report that comes after its
    transaction's end fills it in (record_late)."""

    async def step_seen(self, charge_point: str, charger_key: str, sequence: int) -> bool: ...

    async def record_step(self, step: TransactionStep, now: float) -> None: ...

    async def has_started(self, charge_point: str, charger_key: str) -> bool:
        """Whether a Started of this transaction has been kept."""
        ...

    async def record_late(
        self,
        report: LateReport,
        *,
        decision: AuthDecision | None,
        user_id: str | None,
        evse_id: str | None,
        held_detail: str,
        released_detail: str,
        outbox: StopOutbox,
        now: float,
    ) -> LateRecorded | None:
        """Fill a transaction with a late report and, once its Started is in, judge the CDR
        held for `held_detail` again (queued with a compare-and-set): one commit. None when
        no transaction has the report's key."""
        ...


class RemoteStartStore(SessionReads, Protocol):
    """What Remote (bridge/remote.py) keeps of the EMPs' remote starts and stops."""

    async def claim_evse(
        self,
        s: SessionRecord,
        places: Sequence[tuple[str, int]],
        owed: Sequence[NewOutbox] = (),
        now: float = 0.0,
    ) -> int | None:
        """Store a pending remote start unless its EVSE is held; its remote ref, else None.
        `owed`: outbox rows written in the claim's commit, only when it wins."""
        ...

    async def remote_start_tag(self, charge_point: str, remote_ref: int) -> str | None:
        """The idTag of the remote start sent to a charger under its remote ref."""
        ...

    async def open_session_on(self, charge_point: str, connector: int) -> SessionRecord | None: ...

    async def pending_sessions(self) -> list[SessionRecord]: ...

    async def failed_remote_starts(self, now: float) -> list[SessionRecord]: ...

    async def id_tag_for(self, evco_id: str, make: Callable[[str, int], str]) -> str: ...

    async def settle(self, rows: Sequence[NewOutbox]) -> int: ...


class CommandStore(Protocol):
    """What the partners' commands (bridge/commands.py) keep: the result each command owes,
    written before the partner is told it was accepted, and the reservations made."""

    async def session(self, session_id: str) -> SessionRecord | None: ...

    async def owe(self, rows: Sequence[NewOutbox], now: float) -> None:
        """Queue outbox rows on their own (each due at its due_at)."""
        ...

    async def settle(self, rows: Sequence[NewOutbox]) -> int:
        """Rewrite pending rows owed for later (same EMP, kind, key) with what they now say,
        due at their due_at (None: at once); a row already sent is left alone."""
        ...

    async def save_reservation(self, r: Reservation, now: float) -> int:
        """Store (or replace: same EMP and ref) a reservation; returns its number, the one
        the charger knows it by (kept when replaced)."""
        ...

    async def reservation(self, emp: str, ref: str) -> Reservation | None: ...

    async def reservation_ended(
        self, number: int, state: ReservationState, settles: Sequence[NewOutbox]
    ) -> None:
        """Record how a reservation's command ended, with its result rows in one commit."""
        ...


class ReconcileStore(SessionReads, Protocol):
    """What the Reconciler (bridge/reconcile.py) reads of open transactions."""

    async def open_transactions(self) -> list[tuple[TxRecord, SessionRecord]]: ...


class ReviewStore(SessionReads, Protocol):
    """What releasing a CDR held for review (bridge/held.py) writes."""

    async def release_reviewed(
        self, session_id: str, rows: Sequence[NewOutbox], detail: str, now: float
    ) -> bool: ...


class StatusStore(Protocol):
    """What the status engine (bridge/status.py) keeps of connectors and EVSE statuses."""

    async def connector_states(self) -> dict[tuple[str, int], str | None]: ...

    async def connector_trusted_at(self) -> dict[tuple[str, int], float]: ...

    async def evse_statuses(self) -> dict[str, str]: ...

    async def boot_times(self) -> dict[str, str]: ...

    async def record_connector_state(
        self,
        charge_point: str,
        connector: int,
        state: str | None,
        error_code: str,
        at: str | None,
        *,
        trusted_at: float | None = None,
        ignored: str | None = None,
        now: float | None = None,
    ) -> None: ...

    async def set_evse_status(
        self, evse_id: str, status: str, outbox: Sequence[NewOutbox], now: float
    ) -> None: ...

    async def transaction(self, tx_id: int) -> TxRecord | None: ...


class DeliveryStore(Protocol):
    """The outbox as the Deliverer (bridge/delivery.py) works through it."""

    async def due(self, emp: str, now: float, limit: int, *, lease_s: float) -> list[OutboxItem]:
        """Claim up to `limit` due rows for this node until now + lease_s; the outcomes
        below clear the claim, and apply only while this node still holds it."""
        ...

    async def release(self, item_id: int) -> None: ...

    async def mark_delivered(self, ids: Sequence[int], now: float) -> None: ...

    async def mark_retry(self, item_id: int, next_at: float, error: str) -> None: ...

    async def mark_dead(self, item_id: int, error: str, now: float) -> None: ...

    async def postpone(self, item_id: int, next_at: float, reason: str) -> None: ...

    async def release_held(self, emp: str, reason_prefix: str, now: float) -> int: ...

    async def delivered_stations(self, emp: str) -> set[str]: ...


class OwedStore(Protocol):
    """Rows owed to EMPs that no stored change writes (a charger's answer to a command)."""

    async def queue_owed(self, rows: Sequence[NewOutbox], now: float) -> None: ...


class StationStore(Protocol):
    """What station sync (bridge/station_sync.py) compares and queues."""

    async def posted_stations(self, emp: str) -> dict[str, PostedStation]: ...

    async def queue_station(
        self, emp: str, station_id: str, digest: str, deleted: bool, outbox: NewOutbox, now: float
    ) -> None: ...


class TariffStore(Protocol):
    """What tariff sync (bridge/tariff_sync.py) compares and queues: per EMP and tariff id,
    the digest last queued and whether that was its removal."""

    async def queued_tariffs(self, emp: str) -> dict[str, tuple[str, bool]]: ...

    async def queue_tariff(
        self, emp: str, tariff_id: str, digest: str, deleted: bool, outbox: NewOutbox, now: float
    ) -> None: ...


class WhitelistStore(Protocol):
    """The EMPs' whitelists, as the authorization chain and whitelist updates see them."""

    async def whitelist_partners(self, uid: str) -> list[str]: ...

    async def replace_whitelist(
        self, emp: str, uids: Sequence[str], at: str
    ) -> tuple[int, int]: ...


class LocalListStore(Protocol):
    """What the local-list pusher (bridge/locallist.py) keeps per charger."""

    async def whitelist_union(self) -> list[str]: ...

    async def whitelist_version(self) -> int: ...

    async def local_list_record(self, charge_point_id: str) -> LocalListRecord: ...

    async def local_list_records(self) -> list[LocalListRecord]: ...

    async def save_local_list_record(self, record: LocalListRecord) -> None: ...


class ChargerStore(Protocol):
    """Chargers' boots, presence and passwords, as the core records them."""

    async def record_boot(self, info: BootInfo, status: str, at: str) -> None: ...

    async def record_presence(self, charge_point_id: str, connected: bool, at: float) -> None: ...

    async def forget_presence(self, at: float) -> None: ...

    async def password_hash(self, charge_point_id: str) -> str | None: ...


class HousekeepingStore(Protocol):
    """What housekeeping prunes."""

    async def prune_delivered(self, before: float) -> int: ...

    async def prune_ignored_statuses(self, before: float) -> int: ...


class SecurityStore(Protocol):
    """What the chargers' certificate service (csms/security.py) records: the security
    events chargers report and the certificates signed for them. The core needs none of it."""

    async def record_security_event(
        self,
        charge_point_id: str,
        type_: str,
        timestamp: str,
        tech_info: str | None,
        received_at: float,
    ) -> None: ...

    async def record_certificate(
        self,
        charge_point_id: str,
        serial: str,
        sha256: str,
        not_after: str,
        status: str,
        issued_at: float,
    ) -> None: ...


class OpsStore(Protocol):
    """What operators' tools (the CLI, the console, /metrics) read and change beside the
    core: reports and outbox maintenance. The core itself needs none of it."""

    async def list_sessions(
        self, limit: int = 50, state: str | None = None
    ) -> list[SessionRecord]: ...

    async def list_outbox(self, state: str | None = None, limit: int = 100) -> list[OutboxItem]: ...

    async def outbox_stats(self, now: float) -> list[OutboxStat]: ...

    async def enqueue(self, rows: Sequence[NewOutbox], now: float) -> None: ...

    async def requeue(self, ids: Sequence[int] | None, now: float) -> int: ...

    async def purge(self, item_id: int) -> bool: ...

    async def next_due_at(self, emp: str) -> float | None: ...

    async def local_list_state(self, charge_point_id: str) -> tuple[int, int, bool]: ...

    async def set_password_hash(self, charge_point_id: str, password_hash: str) -> None: ...

    async def steps_of(self, charge_point: str, charger_key: str) -> list[TransactionStep]:
        """A charger-named transaction's numbered reports as kept, in the charger's order."""
        ...

    async def whitelist_counts(self) -> dict[str, int]: ...

    async def whitelist_page(
        self, emp: str | None, limit: int, offset: int = 0
    ) -> list[tuple[str, str]]: ...


class TokenStore(Protocol):
    """Partners' tokens as the store keeps them (implemented by store/)."""

    async def upsert_token(self, token: PartnerToken, now: float) -> bool:
        """Store one token (also into a list being replaced); True when the chargers' lists
        change."""
        ...

    async def token(
        self, partner: str, country: str, party: str, uid: str, kind: str | None
    ) -> PartnerToken | None: ...

    async def begin_token_list(self, partner: str, now: float) -> int: ...

    async def stage_tokens(self, partner: str, pull: int, tokens: Sequence[PartnerToken]) -> None:
        """One page of a list being replaced, in one commit."""
        ...

    async def finish_token_list(self, partner: str, pull: int, at: str) -> TokensReplaced:
        """Make the staged list the partner's, atomically; a list never finished leaves the
        partner's tokens as they were."""
        ...

    async def token_listings(self, uid: str) -> list[Listing]: ...

    async def issued_as(self, partner: str, card_uid: str) -> tuple[str, str] | None:
        """(uid as issued, kind) of the partner's token a charger presents as `card_uid`."""
        ...


class StorePort(
    TransactionStore,
    StepStore,
    CommandStore,
    RemoteStartStore,
    ReconcileStore,
    ReviewStore,
    StatusStore,
    DeliveryStore,
    OwedStore,
    StationStore,
    TariffStore,
    WhitelistStore,
    LocalListStore,
    TokenStore,
    ChargerStore,
    HousekeepingStore,
    Protocol,
):
    """Everything the core needs of storage: what Core is given, and hands on to each part
    as that part's own port above."""
