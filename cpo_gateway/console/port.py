"""What the console reads and does: one narrow port, implemented by the composition root.

The console is an adapter like csms/ and oioi/: it never imports them, nor the store or the
jobs. Every value it shows is one of the plain records below; every action returns an
ActionResult and goes through the same code path as the CLI or the admin socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

Health = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]
Metrics = Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class ChargerView:
    id: str
    online: bool
    protocol: str  # ocpp1.6 | ocpp2.0.1 | "" (not connected)
    security_profile: int  # 0 none, 1 Basic auth, 2 + TLS, 3 client certificate
    vendor: str
    model: str
    firmware: str
    booted_at: str
    last_message: str
    list_version: int
    list_push: str  # the last push's outcome, or ""


@dataclass(frozen=True, slots=True)
class ConnectorView:
    charge_point: str
    connector: int
    evse_id: str
    status: str  # the charger's last OCPP status
    emp_status: str  # per EMP, the status last sent for its EVSE and its delivery state


@dataclass(frozen=True, slots=True)
class SessionView:
    id: str
    state: str  # pending | active | finished | failed | needs_review
    origin: str
    evse_id: str
    charge_point: str
    emp: str  # "" for a local session (no EMP)
    started_at: str
    stopped_at: str
    energy_kwh: float | None
    duration_s: float | None
    cdr_state: str  # none | pending | delivered | dead | held
    detail: str


@dataclass(frozen=True, slots=True)
class OutboxView:
    id: int
    emp: str
    kind: str
    key: str
    state: str  # pending | dead | delivered
    attempts: int
    last_error: str
    next_attempt: str
    payload: str  # JSON text


@dataclass(frozen=True, slots=True)
class EmpView:
    name: str
    last_success: str
    last_error: str
    queue_depth: int
    dead: int
    paused: str


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    detail: str


class ConsoleOps(Protocol):
    # --- reading ---------------------------------------------------------------------------
    async def chargers(self) -> list[ChargerView]: ...

    async def connectors(self) -> list[ConnectorView]: ...

    async def sessions(
        self, state: str | None, emp: str | None, limit: int
    ) -> list[SessionView]: ...

    async def outbox(self, state: str | None, limit: int) -> list[OutboxView]: ...

    async def whitelist_counts(self) -> dict[str, int]: ...

    async def whitelist_lookup(self, uid: str) -> tuple[str, list[str]]: ...

    def security_events(self) -> dict[str, int]: ...

    async def emps(self) -> list[EmpView]: ...

    # --- acting (each one is audited by the console) ---------------------------------------
    async def remote_stop(self, session_id: str) -> ActionResult: ...

    async def unlock(self, charge_point: str, connector: int) -> ActionResult: ...

    async def reset(self, charge_point: str, kind: str) -> ActionResult: ...

    async def change_availability(
        self, charge_point: str, connector: int, kind: str
    ) -> ActionResult: ...

    async def trigger_status(self, charge_point: str) -> ActionResult: ...

    async def push_local_list(self, charge_point: str) -> ActionResult: ...

    async def close_session(self, session_id: str, reason: str) -> ActionResult: ...

    async def release_cdr(self, session_id: str) -> ActionResult: ...

    async def outbox_retry(self, row_id: int) -> ActionResult: ...

    async def outbox_retry_pending(self) -> ActionResult: ...

    async def outbox_purge(self, row_id: int) -> ActionResult: ...
