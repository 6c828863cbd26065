"""The core's vocabulary: what the charger side reports, what the EMP side asks, and what
the gateway owes the EMP. Protocol-neutral: adapters translate to and from the protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cpo_gateway.bridge.ids import try_normalise_uid


# --- charger side -------------------------------------------------------------------------
class ConnectorState(StrEnum):
    """A connector's state as a charger reports it (OCPP 1.6 ChargePointStatus values)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class AuthStatus(StrEnum):
    """What a charger is told about an idTag (OCPP AuthorizationStatus)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class AuthPath(StrEnum):
    """How an authorization decision was reached: billing disputes need it."""

    WHITELIST = "whitelist"
    REMOTE = "remote"
    CACHE = "cache"
    ONLINE = "online"
    POLICY = "policy"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class AuthDecision:
    status: AuthStatus
    path: AuthPath
    partner: str | None = None  # the EMP (by name) that authorized, None when nobody did
    uid: str | None = None  # normalised UID when the idTag is one


@dataclass(frozen=True, slots=True)
class Started:
    """A StartTransaction as the core took it: the transaction id to give the charger and
    the verdict on its idTag."""

    transaction_id: int
    decision: AuthDecision


class CommandStatus(StrEnum):
    """Outcome of a command sent to a charger."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NOT_SUPPORTED = "not_supported"
    TIMEOUT = "timeout"
    OFFLINE = "offline"
    FAILED = "failed"  # the charger answered with a CallError
    # A reservation refused for what the EVSE is doing: in use, or faulted / out of service.
    OCCUPIED = "occupied"
    INOPERATIVE = "inoperative"


@dataclass(frozen=True, slots=True)
class CommandResult:
    status: CommandStatus
    detail: str = ""
    data: dict[str, object] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status is CommandStatus.ACCEPTED


@dataclass(frozen=True, slots=True)
class EnergySample:
    """One reading of the energy import register, already converted to Wh.

    timestamp is kept exactly as the charger sent it.
    """

    timestamp: str
    wh: float
    signed: SignedReading | None = None  # the meter's signature of this reading, when sent


@dataclass(frozen=True, slots=True)
class SignedReading:
    """A reading as the meter signed it (Eichrecht meters: OCMF and the like), for a driver
    to verify the CDR with the meter's public key. `data` is the signed blob, `plain` the
    reading as sent beside it, `encoding` how the blob is encoded; `nature` is Start or End
    once it is in a CDR (the first and last signed reading of the transaction), `at` the
    charger's timestamp of the reading once stored."""

    data: str
    plain: str
    encoding: str
    public_key: str | None = None
    method: str | None = None
    nature: str | None = None
    at: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionStart:
    """A charger began a transaction.

    charger_key: the transaction's name chosen by the charger, for chargers that name their
    own transactions (the gateway's integer id is then only ours): the same key twice is the
    same transaction, whatever else differs. meter_start_wh None: the charger sent no
    register reading with the start (the first reading later takes its place)."""

    charge_point_id: str
    connector_id: int
    id_tag: str
    meter_start_wh: int | None
    timestamp: str
    reservation_id: int | None = None
    charger_key: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionStop:
    """A charger ended a transaction. With charger_key, the transaction is found by the
    charger's name for it and transaction_id is not read; connector_id, when known, places a
    stop of a transaction never seen started. meter_stop_wh None: no reading came with the
    stop (the last one known ends it)."""

    charge_point_id: str
    transaction_id: int
    meter_stop_wh: int | None
    timestamp: str
    id_tag: str | None = None
    reason: str | None = None
    samples: tuple[EnergySample, ...] = ()
    charger_key: str | None = None
    connector_id: int | None = None
    sequence: int | None = None  # the charger's number of this report (see TransactionStep)


@dataclass(frozen=True, slots=True)
class LateReport:
    """A Started or Updated of a charger-named transaction that has ended already (its Ended
    came first). It fills in what the Ended did not say: the idTag, the connector (0: this
    report names none either), and for a Started the start time and first reading; its
    readings are folded in as any are. `started`: this is the transaction's Started."""

    charge_point_id: str
    charger_key: str
    connector_id: int
    id_tag: str | None
    timestamp: str
    started: bool
    samples: tuple[EnergySample, ...] = ()


@dataclass(frozen=True, slots=True)
class MeterReport:
    charge_point_id: str
    connector_id: int
    transaction_id: int | None
    samples: tuple[EnergySample, ...]
    charger_key: str | None = None  # the charger's name for the transaction (see above)


class StepKind(StrEnum):
    """Where in its life a transaction is, as one numbered report of a charger says."""

    STARTED = "started"
    UPDATED = "updated"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class TransactionStep:
    """One numbered report about a charger-named transaction, kept as received.

    `sequence` is the charger's counter over its reports: the same (charger, key, sequence)
    twice is one report resent, and sorting by it gives the order the charger meant whatever
    the order they arrived in. `queued` says the charger held it while offline (its
    timestamp is when it happened, not when it came)."""

    charge_point_id: str
    charger_key: str
    sequence: int
    kind: StepKind
    timestamp: str
    trigger: str
    reason: str | None = None
    remote_id: int | None = None
    queued: bool = False


@dataclass(frozen=True, slots=True)
class StatusReport:
    charge_point_id: str
    connector_id: int  # 0 = the charger as a whole
    state: ConnectorState | None  # None: a value we do not know (mapped to Unknown)
    error_code: str = "NoError"
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class BootInfo:
    charge_point_id: str
    vendor: str
    model: str
    serial: str | None = None
    firmware: str | None = None


# --- EMP side -------------------------------------------------------------------------------
class EvseStatus(StrEnum):
    """An EVSE's status toward the EMP."""

    AVAILABLE = "Available"
    OCCUPIED = "Occupied"
    OFFLINE = "Offline"
    RESERVED = "Reserved"
    UNKNOWN = "Unknown"


class UserKind(StrEnum):
    EVCO_ID = "evco-id"
    RFID = "rfid"
    USERNAME = "username"
    # A partner's contract id that is not an EVCO ID (e.g. a longer eMA ID): the charger is
    # given it as idTag when it fits, else a stable idTag made for it.
    CONTRACT_ID = "contract-id"


@dataclass(frozen=True, slots=True)
class User:
    kind: UserKind
    identifier: str


class Outcome(StrEnum):
    """Business outcome of an EMP request, mapped to a protocol result code by the adapter."""

    OK = "ok"
    EVSE_NOT_FOUND = "evse_not_found"
    SESSION_NOT_FOUND = "session_not_found"
    EVSE_ERROR = "evse_error"  # charger offline, faulted, or rejected the command
    EVSE_TIMEOUT = "evse_timeout"
    EVSE_IN_USE = "evse_in_use"
    NOT_ALLOWED = "not_allowed"  # another partner's EVSE or session
    BAD_USER = "bad_user"  # identifier cannot be mapped to an idTag


@dataclass(frozen=True, slots=True)
class StartResult:
    outcome: Outcome
    session_id: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StopResult:
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Interval:
    start: str  # RFC 3339 with offset
    stop: str | None = None


@dataclass(frozen=True, slots=True)
class Cdr:
    """A charge detail record owed to one EMP."""

    session_id: str
    evse_id: str
    user: User
    session_interval: Interval
    partner_identifier: str
    charging_interval: Interval | None = None
    energy_kwh: float | None = None
    # How the driver was authorized (an AuthPath value; None when not recorded), and the
    # charger and its connector that served the session (which connector of the EVSE).
    auth_path: str | None = None
    charge_point: str | None = None
    connector: int | None = None
    signed: tuple[SignedReading, ...] = ()  # the first (Start) and last (End) signed reading


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    evse_id: str
    status: EvseStatus
    partner_identifier: str


@dataclass(frozen=True, slots=True)
class Place:
    """Where a card is presented, for an EMP's online check: the station (site) and its
    EVSEs served by the charger (all of its EVSEs when the connector is not known)."""

    site: str
    evses: tuple[str, ...]


class VerifyOutcome(StrEnum):
    """Answer of an EMP asked online about a token presented at a charger."""

    ACCEPTED = "accepted"
    UNKNOWN = "unknown"
    BLOCKED = "blocked"
    NO_PAYMENT = "no_payment"
    EXPIRED = "expired"
    NOT_ALLOWED = "not_allowed"  # known, but not allowed here (at this location, say)
    UNREACHABLE = "unreachable"


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: back off and try again
    REJECTED = "rejected"  # permanent: dead letter
    # The EMP refuses our credentials: no message can pass until they are fixed, so the
    # EMP is paused and its messages kept, not dead-lettered one by one.
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class Delivery:
    status: DeliveryStatus
    detail: str = ""
    retry_after_s: float | None = None  # a floor for the next attempt (Retry-After)
    http_status: int | None = None
    code: int | None = None


# --- partners' tokens (see bridge/tokens.py) ---------------------------------------------
class TokenPolicy(StrEnum):
    """How a token may be authorized (the values are what the database stores; what each
    allows is in bridge/tokens.py and bridge/auth.py)."""

    LOCAL_ONLY = "local_only"
    LOCAL_FIRST = "local_first"
    ONLINE_FIRST = "online_first"
    ONLINE_ONLY = "online_only"

    @property
    def answered_locally(self) -> bool:
        return self in (TokenPolicy.LOCAL_ONLY, TokenPolicy.LOCAL_FIRST)

    @property
    def in_local_lists(self) -> bool:
        return self is not TokenPolicy.ONLINE_ONLY


@dataclass(frozen=True, slots=True)
class PartnerToken:
    """One token as a partner issued it. (country, party, uid, kind) names it within the
    partner; `body` is the adapter's full rendering, kept to answer reads as it was given."""

    partner: str
    country: str
    party: str
    uid: str
    kind: str
    valid: bool
    policy: TokenPolicy
    contract_id: str
    last_updated: str
    group_id: str | None = None
    body: dict[str, Any] | None = None

    @property
    def card_uid(self) -> str | None:
        """The normalised UID a charger presents for it; None when it is no card UID."""
        return try_normalise_uid(self.uid)


@dataclass(frozen=True, slots=True)
class Listing:
    """One partner's word on a card: its whitelist (policy LOCAL_FIRST, valid) or a token."""

    partner: str
    policy: TokenPolicy
    valid: bool


@dataclass(frozen=True, slots=True)
class TokensReplaced:
    """What a full list replaced: tokens in the new list, tokens the old one had."""

    total: int
    previous: int
