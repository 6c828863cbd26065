"""The console's port (console/port.py) over the running gateway's parts.

Beside app.py, like it allowed to import every adapter: the console reads the store, the
charger registry and the core through this one object, and acts through the same code paths
as the CLI and the admin socket (the core's close_session, the store's requeue / purge /
retry_pending_now / release_reviewed, the registry's typed commands).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from cpo_gateway.bridge.cdr import CDR_KIND
from cpo_gateway.bridge.clock import rfc3339, to_epoch
from cpo_gateway.bridge.core_ports import OperatorSide
from cpo_gateway.bridge.ids import try_normalise_uid
from cpo_gateway.bridge.model import CommandResult, CommandStatus
from cpo_gateway.bridge.ports import OutboxItem, OutboxState, SessionRecord, SessionState, TxRecord
from cpo_gateway.cluster.control import LocalChargers
from cpo_gateway.config import Config
from cpo_gateway.console.port import (
    ActionResult,
    ChargerView,
    ConnectorView,
    EmpView,
    OutboxView,
    SessionView,
)
from cpo_gateway.csms.server import CsmsServer
from cpo_gateway.store import Store

_OUTBOX_ROWS_FOR_HEALTH = 5000  # the per-EMP health reads at most this many recent rows


def _command(result: CommandResult) -> ActionResult:
    detail = result.status.value + (f": {result.detail}" if result.detail else "")
    return ActionResult(result.status is CommandStatus.ACCEPTED, detail)


def _energy_kwh(tx: TxRecord | None) -> float | None:
    if tx is None:
        return None
    start = tx.meter_start_wh if tx.meter_start_wh is not None else tx.first_wh
    end = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.last_wh
    if start is None or end is None:
        return None
    return round(max(0.0, end - start) / 1000.0, 3)


def _duration_s(tx: TxRecord | None, now: float) -> float | None:
    started = to_epoch(tx.started_at) if tx is not None else None
    if tx is None or started is None:
        return None
    stopped = to_epoch(tx.stopped_at) if tx.stopped_at else now
    return None if stopped is None else max(0.0, stopped - started)


def _when(ts: float | None) -> str:
    return "" if ts is None else rfc3339(ts)


def _outbox_view(item: OutboxItem) -> OutboxView:
    return OutboxView(
        id=item.id,
        emp=item.emp,
        kind=item.kind,
        key=item.key,
        state=item.state,
        attempts=item.attempts,
        last_error=item.last_error or "",
        next_attempt=_when(item.next_at) if item.state is OutboxState.PENDING else "",
        payload=orjson.dumps(item.payload, option=orjson.OPT_INDENT_2).decode(),
    )


class GatewayOps:
    """ConsoleOps over one started gateway's store, core and OCPP server."""

    def __init__(
        self,
        config: Config,
        store: Store,
        core: OperatorSide,
        csms: CsmsServer,
        clock: Callable[[], float] = time.time,
        chargers: LocalChargers | None = None,
    ) -> None:
        """`chargers`: where commands go (a cluster's reach every node; default: this
        gateway's own chargers)."""
        self._cfg = config
        self._store = store
        self._core = core
        self._csms = csms
        self._registry: LocalChargers = chargers or csms.registry
        self._clock = clock

    # --- reading -------------------------------------------------------------------------------
    async def chargers(self) -> list[ChargerView]:
        boots = await self._store.boot_infos()
        booted = await self._store.boot_times()
        lists = {r.charge_point: r for r in await self._store.local_list_records()}
        known = set(self._core.charge_point_ids()) | set(boots)
        connections = self._csms.connections
        now_wall, now_mono = self._clock(), time.monotonic()
        views = []
        for cp in sorted(known | set(connections)):
            conn = connections.get(cp)
            boot = boots.get(cp)
            record = lists.get(cp)
            seen = "" if conn is None else rfc3339(now_wall - (now_mono - conn.last_seen))
            views.append(
                ChargerView(
                    id=cp,
                    online=conn is not None,
                    protocol="" if conn is None else str(conn.ws.subprotocol or ""),
                    security_profile=self._core.security_profile(cp),
                    vendor=boot.vendor if boot else "",
                    model=boot.model if boot else "",
                    firmware=(boot.firmware or "") if boot else "",
                    booted_at=booted.get(cp, ""),
                    last_message=seen,
                    list_version=record.version if record else 0,
                    list_push=(record.result or "") if record else "",
                )
            )
        return views

    async def connectors(self) -> list[ConnectorView]:
        states = await self._store.connector_states()
        queued = await self._store.evse_statuses()
        per_emp: dict[str, dict[str, str]] = {}
        for emp, evse_id, status, state in await self._store.last_statuses():
            per_emp.setdefault(evse_id, {})[emp] = f"{emp}: {status} ({state})"

        def sent(evse_id: str) -> str:
            """The status last sent to each EMP and how it fared; the status queued for all
            when the outbox no longer holds its rows."""
            mine = per_emp.get(evse_id)
            if mine:
                return "; ".join(mine[emp] for emp in sorted(mine))
            return queued.get(evse_id, "")

        return [
            ConnectorView(
                charge_point=c.charge_point,
                connector=c.connector,
                evse_id=c.evse_id,
                status=states.get((c.charge_point, c.connector)) or "",
                emp_status=sent(c.evse_id),
            )
            for c in sorted(self._core.connectors(), key=lambda c: (c.charge_point, c.connector))
        ]

    async def sessions(self, state: str | None, emp: str | None, limit: int) -> list[SessionView]:
        records = await self._store.list_sessions(limit, state)
        if emp is not None:
            records = [s for s in records if (s.emp or "(local)") == emp]
        cdrs = await self._store.states_of(CDR_KIND, [s.id for s in records])
        now = self._clock()
        views = []
        for s in records:
            tx = await self._store.transaction(s.transaction_id) if s.transaction_id else None
            views.append(self._session_view(s, tx, cdrs.get(s.id), now))
        return views

    def _session_view(
        self, s: SessionRecord, tx: TxRecord | None, cdr: str | None, now: float
    ) -> SessionView:
        cdr_state = "held" if s.state == SessionState.NEEDS_REVIEW else cdr or "none"
        return SessionView(
            id=s.id,
            state=s.state,
            origin=s.origin,
            evse_id=s.evse_id or "",
            charge_point=s.charge_point,
            emp=s.emp or "",
            started_at=(tx.started_at if tx else None) or s.created_at,
            stopped_at=(tx.stopped_at if tx else None) or "",
            energy_kwh=_energy_kwh(tx),
            duration_s=_duration_s(tx, now),
            cdr_state=cdr_state,
            detail=s.detail or "",
        )

    async def outbox(self, state: str | None, limit: int) -> list[OutboxView]:
        return [_outbox_view(i) for i in await self._store.list_outbox(state, limit)]

    async def whitelist_counts(self) -> dict[str, int]:
        return await self._store.whitelist_counts()

    async def whitelist_lookup(self, uid: str) -> tuple[str, list[str]]:
        normal = try_normalise_uid(uid)
        if normal is None:
            return "", []
        return normal, await self._store.whitelist_partners(normal)

    def security_events(self) -> dict[str, int]:
        events = {f"refused: {r.value}": n for r, n in self._csms.refusals.counts.items() if n}
        events["charger logins refused"] = self._csms.auth_failures
        events["connections taken over"] = self._csms.takeovers
        return events

    async def emps(self) -> list[EmpView]:
        delivered = await self._store.list_outbox("delivered", _OUTBOX_ROWS_FOR_HEALTH)
        waiting = await self._store.list_outbox(None, _OUTBOX_ROWS_FOR_HEALTH)
        paused = self._core.paused_emps
        views = []
        for e in self._cfg.emps:
            done = [i.done_at for i in delivered if i.emp == e.name and i.done_at is not None]
            mine = [i for i in waiting if i.emp == e.name]
            errors = [i for i in mine if i.last_error]
            views.append(
                EmpView(
                    name=e.name,
                    last_success=_when(max(done)) if done else "",
                    last_error=errors[-1].last_error or "" if errors else "",
                    queue_depth=sum(1 for i in mine if i.state is OutboxState.PENDING),
                    dead=sum(1 for i in mine if i.state is OutboxState.DEAD),
                    paused=paused.get(e.name, ""),
                )
            )
        return views

    # --- acting --------------------------------------------------------------------------------
    async def remote_stop(self, session_id: str) -> ActionResult:
        session = await self._store.session(session_id)
        if (
            session is None
            or session.state != SessionState.ACTIVE
            or session.transaction_id is None
        ):
            return ActionResult(False, "no running session with that id")
        return _command(
            await self._registry.remote_stop(session.charge_point, session.transaction_id)
        )

    async def unlock(self, charge_point: str, connector: int) -> ActionResult:
        return _command(await self._registry.unlock_connector(charge_point, connector))

    async def reset(self, charge_point: str, kind: str) -> ActionResult:
        if kind not in ("Soft", "Hard"):
            return ActionResult(False, "type: expected Soft or Hard")
        return _command(await self._registry.reset(charge_point, kind))

    async def change_availability(
        self, charge_point: str, connector: int, kind: str
    ) -> ActionResult:
        if kind not in ("Operative", "Inoperative"):
            return ActionResult(False, "type: expected Operative or Inoperative")
        return _command(await self._registry.change_availability(charge_point, connector, kind))

    async def trigger_status(self, charge_point: str) -> ActionResult:
        return _command(await self._registry.trigger_status(charge_point))

    async def push_local_list(self, charge_point: str) -> ActionResult:
        if not self._registry.is_connected(charge_point):
            return ActionResult(False, "offline: the charger is not connected")
        status = await self._core.push_local_list(charge_point)
        if status is None:
            return ActionResult(True, "the charger's list is up to date")
        return ActionResult(status is CommandStatus.ACCEPTED, status.value)

    async def close_session(self, session_id: str, reason: str) -> ActionResult:
        result = await self._core.close_session(session_id, reason)
        return ActionResult(result.closed, result.detail)

    async def release_cdr(self, session_id: str) -> ActionResult:
        """As `cpo-gateway sessions release`: queue a held CDR as it is."""
        released = await self._core.release_held_cdr(session_id)
        return ActionResult(released.ok, released.detail)

    async def outbox_retry(self, row_id: int) -> ActionResult:
        n = await self._store.requeue([row_id], self._clock())
        return ActionResult(n > 0, f"{n} row(s) queued again")

    async def outbox_retry_pending(self) -> ActionResult:
        n = await self._store.retry_pending_now(self._clock())
        return ActionResult(True, f"{n} pending row(s) due now")

    async def outbox_purge(self, row_id: int) -> ActionResult:
        ok = await self._store.purge(row_id)
        return ActionResult(ok, "purged" if ok else "no such row")
