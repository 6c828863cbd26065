"""What each consumer of the core may ask of it: one narrow Protocol per consumer.

The core (`bridge.core.Core`) implements them all; app.py hands each adapter the one it
needs, typed as that port. An adapter never imports `bridge.core` (tests/test_architecture.py
checks it), so it cannot reach into the core's parts, and a fake of its port for a test is a
few lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cpo_gateway.bridge.catalogue import Connector
from cpo_gateway.bridge.commands import Answer
from cpo_gateway.bridge.held import Released
from cpo_gateway.bridge.locallist import ListState
from cpo_gateway.bridge.model import (
    AuthDecision,
    AuthPath,
    AuthStatus,
    BootInfo,
    CommandStatus,
    DeliveryStatus,
    LateReport,
    MeterReport,
    PartnerToken,
    Started,
    StartResult,
    StatusReport,
    StopResult,
    TokensReplaced,
    TransactionStart,
    TransactionStep,
    TransactionStop,
    User,
)
from cpo_gateway.bridge.ports import TxRecord
from cpo_gateway.bridge.reconcile import CloseResult


@dataclass(frozen=True, slots=True)
class WhitelistReplaced:
    """A whitelist replaced as a whole: UIDs new to the list, and the list's size now."""

    new: int
    total: int


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows removed by housekeeping: delivered outbox rows, ignored statuses."""

    outbox_rows: int
    ignored_statuses: int


class ChargerSide(Protocol):
    """What the OCPP side (csms/) asks of the core: identity, presence, and each message a
    charger sends, answered from what the core has committed."""

    def is_known_charger(self, charge_point_id: str) -> bool: ...

    async def password_hash(self, charge_point_id: str) -> str | None: ...

    def security_profile(self, charge_point_id: str) -> int: ...

    def charger_connected(self, charge_point_id: str) -> None: ...

    def charger_disconnected(self, charge_point_id: str) -> None: ...

    async def boot(self, info: BootInfo) -> bool: ...

    async def authorize(self, charge_point_id: str, id_tag: str) -> AuthDecision: ...

    async def start_transaction(self, start: TransactionStart) -> Started: ...

    async def stop_transaction(self, stop: TransactionStop) -> AuthDecision | None: ...

    async def meter_values(self, report: MeterReport) -> None: ...

    async def status_notification(self, report: StatusReport) -> None: ...

    async def push_local_list(self, charge_point_id: str) -> CommandStatus | None:
        """Send the charger its whitelist now (after a boot or a resync); None: up to date."""
        ...

    # For chargers that name their own transactions and number connectors per EVSE.
    async def charger_transaction(
        self, charge_point_id: str, charger_key: str
    ) -> TxRecord | None: ...

    async def start_earlier(self, tx_id: int, started_at: str) -> None: ...

    async def remote_start_tag(self, charge_point_id: str, remote_ref: int) -> str | None:
        """The idTag of the remote start sent to this charger under `remote_ref` (the number
        the charger knows it by), for a start report that names only that number."""
        ...

    async def identify_start(self, tx_id: int, id_tag: str) -> AuthDecision | None: ...

    async def record_step(self, step: TransactionStep) -> None: ...

    async def late_report(self, report: LateReport) -> AuthDecision | None: ...

    async def open_charger_keys(self, charge_point_id: str) -> list[tuple[str, int]]: ...

    def connector_by_address(self, charge_point_id: str, evse: int, evse_connector: int) -> int: ...

    def address_of(self, charge_point_id: str, connector: int) -> tuple[int, int]: ...


class EmpSide(Protocol):
    """What the EMP side (the partner adapters) asks of the core, in the core's words."""

    async def remote_start(self, emp: str, user: User, evse_id: str) -> StartResult: ...

    async def remote_stop(self, emp: str, evse_id: str, session_id: str | None) -> StopResult: ...

    async def set_whitelist(self, emp: str, uids: Sequence[str]) -> WhitelistReplaced:
        """Replace the EMP's whole whitelist (then pushed to the chargers)."""
        ...


class PartnerCommands(Protocol):
    """What a roaming adapter asks of the core for a partner's commands (bridge/commands.py):
    each answers at once and owes its result through the outbox (kind "command-result",
    payload reply_to / command / result / detail)."""

    @property
    def timeout_s(self) -> int: ...

    def connector(self, evse_id: str, position: int) -> Connector | None: ...

    async def start(self, emp: str, user: User, evse_id: str, reply_to: str) -> Answer: ...

    async def stop(self, emp: str, session_id: str, reply_to: str) -> Answer: ...

    async def unlock(self, emp: str, evse_id: str, position: int, reply_to: str) -> Answer: ...

    async def reserve(
        self, emp: str, user: User, evse_id: str, ref: str, expires_at: str, reply_to: str
    ) -> Answer: ...

    async def cancel_reservation(self, emp: str, ref: str, reply_to: str) -> Answer: ...


class ScheduledWork(Protocol):
    """What the scheduler (jobs/) runs of the core: each call is one idempotent pass."""

    @property
    def delivering_to(self) -> tuple[str, ...]:
        """The EMPs with an outbox queue of their own."""
        ...

    @property
    def ghost_grace_s(self) -> float: ...

    async def deliver(self, emp: str) -> int: ...

    async def flush_statuses(self, *, force: bool = False) -> int: ...

    async def expire_pending_starts(self) -> int: ...

    async def push_local_lists(self) -> int: ...

    async def reconcile_ghosts(self) -> int: ...

    async def prune(self, before: float) -> Pruned: ...


class ClusterSide(Protocol):
    """What the cluster adapter asks of the core: to be told of what other nodes must learn,
    and to learn what they tell."""

    def watch(
        self,
        on_presence: Callable[[str, bool], None],
        on_authorization: Callable[[bool], None],
    ) -> None:
        """`on_presence(charger, connected)` after each connect and disconnect here;
        `on_authorization(whole_list)` after each committed change of whitelists or tokens
        (`whole_list`: a list was replaced, chargers are owed theirs now)."""
        ...

    def authorization_changed_elsewhere(self, whole_list: bool) -> None:
        """Another node changed whitelists or tokens: forget cached answers (and push the
        chargers here their lists when a whole list changed)."""
        ...

    async def relearn_pending_starts(self) -> None:
        """Learn pending remote starts another node stored (a charger here begins them)."""
        ...


class OperatorSide(Protocol):
    """What the operators' views (ops.py behind the console) ask of the core."""

    def charge_point_ids(self) -> frozenset[str]: ...

    def connectors(self) -> Iterable[Connector]: ...

    def security_profile(self, charge_point_id: str) -> int: ...

    @property
    def paused_emps(self) -> Mapping[str, str]:
        """EMPs whose deliveries are paused (they refuse our key), with what they answered."""
        ...

    async def push_local_list(self, charge_point_id: str) -> CommandStatus | None: ...

    async def close_session(self, session_id: str, reason: str) -> CloseResult: ...

    async def release_held_cdr(
        self, session_id: str, *, kwh: float | None = None, stop: str | None = None
    ) -> Released: ...


class CoreCounters(Protocol):
    """The core's counters and figures as /metrics (metrics.py) reads them."""

    @property
    def delivery_results(self) -> Mapping[tuple[str, str, DeliveryStatus], int]: ...

    @property
    def authorization_decisions(self) -> Mapping[tuple[AuthPath, AuthStatus], int]: ...

    @property
    def local_list_outcomes(self) -> Mapping[str, int]: ...

    async def local_list_states(self) -> Mapping[ListState, int]: ...


class TokenSide(Protocol):
    """What an adapter that receives partners' tokens asks of the core."""

    async def put_token(self, token: PartnerToken) -> None: ...

    async def get_token(
        self, partner: str, country: str, party: str, uid: str, kind: str | None
    ) -> PartnerToken | None: ...

    async def begin_list(self, partner: str) -> int: ...

    async def list_page(self, partner: str, pull: int, tokens: Sequence[PartnerToken]) -> None: ...

    async def finish_list(self, partner: str, pull: int) -> TokensReplaced: ...

    async def issued_as(self, partner: str, card_uid: str) -> tuple[str, str] | None:
        """(uid as issued, kind) of the partner's token a charger presents as `card_uid`."""
        ...
