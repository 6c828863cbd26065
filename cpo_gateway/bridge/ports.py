"""The interfaces the core talks through. Adapters implement them; app.py wires them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from cpo_gateway.bridge.model import (
    AuthStatus,
    CommandResult,
    Delivery,
    EnergySample,
    Place,
    SignedReading,
    TransactionStart,
    TransactionStop,
    VerifyOutcome,
)


class ChargerControl(Protocol):
    """Commands to chargers (implemented by csms/)."""

    def is_connected(self, charge_point_id: str) -> bool: ...

    async def remote_start(
        self, charge_point_id: str, connector_id: int, id_tag: str, remote_ref: int | None = None
    ) -> CommandResult:
        """remote_ref: the stored number the charger may name the start by when it begins it
        (a charger that names none is sent a number of its own)."""
        ...

    async def remote_stop(
        self, charge_point_id: str, transaction_id: int, charger_key: str | None = None
    ) -> CommandResult:
        """charger_key: the charger's own name for the transaction, when it chose one."""
        ...

    async def send_local_list(
        self, charge_point_id: str, version: int, entries: Sequence[tuple[str, AuthStatus]]
    ) -> CommandResult: ...

    async def trigger_status(
        self, charge_point_id: str, connector_id: int | None = None
    ) -> CommandResult: ...

    async def trigger_meter_values(
        self, charge_point_id: str, connector_id: int
    ) -> CommandResult: ...

    async def local_list_enabled(self, charge_point_id: str) -> bool | None:
        """False when the charger says its local list is switched off; None: it cannot tell."""
        ...

    async def unlock_connector(self, charge_point_id: str, connector_id: int) -> CommandResult: ...

    async def reservation_supported(self, charge_point_id: str) -> bool | None:
        """Whether the charger takes reservations; None: it cannot tell (then try)."""
        ...

    async def reserve_now(
        self, charge_point_id: str, connector_id: int, expiry: str, id_tag: str, reservation: int
    ) -> CommandResult:
        """connector_id 0: any connector of the charger. expiry: RFC 3339. OCCUPIED or
        INOPERATIVE when the charger refuses for what the EVSE is doing."""
        ...

    async def cancel_reservation(self, charge_point_id: str, reservation: int) -> CommandResult:
        """REJECTED when the charger holds no such reservation."""
        ...


class Verifier(Protocol):
    """Online authorization of a card by an EMP (what the authorization chain needs)."""

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> VerifyOutcome:
        """`place`: where the card is presented, when known (an EMP may judge by it)."""
        ...


class EmpLink(Verifier, Protocol):
    """Requests to EMPs (implemented by the partner adapters, one per protocol, behind a
    router that picks each EMP's). `kind` is an Owed value (bridge/owed.py)."""

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery: ...


@dataclass(frozen=True, slots=True)
class TxRecord:
    """A transaction as stored, with its session."""

    id: int
    session_id: str
    charge_point: str
    connector: int
    id_tag: str | None
    started_at: str | None
    meter_start_wh: float | None
    stopped_at: str | None
    meter_stop_wh: float | None
    first_wh: float | None
    first_wh_at: str | None
    last_wh: float | None
    last_wh_at: str | None
    charge_start_at: str | None
    charge_stop_at: str | None
    charger_key: str | None = None  # the charger's own name for it, when it chose one
    # The first and last reading the meter signed (readings come in any order: by timestamp).
    signed_start: SignedReading | None = None
    signed_end: SignedReading | None = None


class SessionState(StrEnum):
    """Where a session stands (the values are what the database stores)."""

    PENDING = "pending"  # a remote start the charger has not begun
    ACTIVE = "active"
    FINISHED = "finished"
    FAILED = "failed"
    NEEDS_REVIEW = "needs_review"  # ended; its CDR is held until an operator releases it

    @property
    def ended(self) -> bool:
        return self in (SessionState.FINISHED, SessionState.FAILED)


class SessionOrigin(StrEnum):
    """How a session began (the values are what the database stores)."""

    REMOTE = "remote"  # an EMP's session-start
    CARD = "card"  # an idTag at the charger
    ORPHAN = "orphan"  # a stop of a transaction the gateway never saw start
    LATE = "late"  # a remote start the charger began after the EMP was told it failed


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    evse_id: str | None
    charge_point: str
    connector: int
    emp: str | None
    origin: SessionOrigin
    user_kind: str | None
    user_id: str | None
    id_tag: str | None
    auth_status: str | None
    auth_path: str | None
    state: SessionState
    created_at: str
    expires_at: float | None
    transaction_id: int | None
    detail: str | None = None  # why it failed, or why it needs review


class OutboxState(StrEnum):
    """Where an outbox row stands (the values are what the database stores)."""

    PENDING = "pending"
    DEAD = "dead"  # a 4xx that retrying cannot fix, or out of its retry window
    DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class OutboxStat:
    """Undelivered outbox rows of one EMP, kind and state: how many, and the oldest's age."""

    emp: str
    kind: str
    state: OutboxState
    depth: int
    oldest_age_s: float


@dataclass(frozen=True, slots=True)
class Recorded:
    """A transaction message as stored: the transaction, its session, and whether it was a
    duplicate (then nothing changed: it is answered from what was stored)."""

    tx: TxRecord
    session: SessionRecord
    duplicate: bool


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    emp: str
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    created_at: float
    next_at: float
    state: OutboxState
    last_error: str | None
    done_at: float | None = None
    # The node delivering it and until when (None: not claimed); the node whose expired
    # claim was taken over by the last claim.
    claimed_by: str | None = None
    claimed_until: float | None = None
    taken_from: str | None = None


@dataclass(frozen=True, slots=True)
class PostedStation:
    """What was last queued as station data for one EMP."""

    hash: str
    payload: dict[str, Any]
    deleted: bool
    delivered: bool


@dataclass(frozen=True, slots=True)
class LocalListRecord:
    """What one charger holds of the whitelist, and how the last push to it went."""

    charge_point: str
    version: int = 0  # whitelist version the charger holds (0: none)
    ocpp_version: int = 0  # the list version number the charger holds
    supported: bool = True
    result: str | None = None  # the last push's outcome (a CommandStatus value, or "disabled")
    detail: str = ""
    failures: int = 0  # failed pushes in a row of `failed_version`
    failed_version: int = 0
    next_at: float | None = None  # no retry before (epoch s); None with failures: gave up
    tried_at: float | None = None


@dataclass(frozen=True, slots=True)
class NewOutbox:
    """An outbox row to write inside the transaction that causes it.

    due_at: not sent before then (epoch s; None: at once). A row owed later unless settled
    first, e.g. a command's result that reads "timeout" until the charger answers."""

    emp: str
    kind: str
    key: str
    payload: dict[str, Any]
    due_at: float | None = None


class ReservationState(StrEnum):
    """Where a partner's reservation stands (the values are what the database stores)."""

    REQUESTED = "requested"  # sent to the charger, no answer yet
    HELD = "held"  # the charger holds it
    REFUSED = "refused"  # the charger refused it, or never answered
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation a partner asked for: `ref` is the partner's id for it, `number` the
    charger's (0 until stored)."""

    emp: str
    ref: str
    charge_point: str
    connector: int  # 0: any connector of the charger
    evse_id: str | None
    expires_at: str  # RFC 3339
    id_tag: str
    state: ReservationState = ReservationState.REQUESTED
    number: int = 0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a stop owes the EMPs: rows to queue, or why the session is held for review
    instead (then nothing leaves until an operator releases or corrects it)."""

    rows: Sequence[NewOutbox] = ()
    hold: str | None = None


__all__ = [
    "ChargerControl",
    "EmpLink",
    "EnergySample",
    "LocalListRecord",
    "NewOutbox",
    "OutboxItem",
    "OutboxStat",
    "OutboxState",
    "Outgoing",
    "Recorded",
    "Reservation",
    "ReservationState",
    "SessionOrigin",
    "SessionRecord",
    "SessionState",
    "TransactionStart",
    "TransactionStop",
    "TxRecord",
    "Verifier",
]
