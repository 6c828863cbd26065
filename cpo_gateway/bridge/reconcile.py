"""Sessions the charger no longer knows: found, asked about, closed with a CDR.

A charger that dropped a transaction without a stop (a reboot, a firmware fault) leaves the
session open: the EVSE then refuses every new session as in use, and a stop as failed,
for ever. The rule: an open transaction whose connector the charger reports Available or
Preparing, and for which no meter readings arrived for `grace_s` (gateway clock; after a
restart counted from the start), is reconciled:

1. The charger is asked for the connector's meter values. Readings that name the
   transaction are proof it runs: the session is kept.
2. Otherwise it is asked to stop the transaction. Accepted: it knows it and its stop will
   close the session as usual; if that stop has not come after another grace, the session
   is closed anyway. Rejected, not supported or failed: it does not know the transaction.
3. The session is closed as a stop would close it, at the last reading known (its time and
   register), so the CDR comes from the same builder in the same commit, and the session's
   detail says why. A charger that cannot be reached (offline, timeout) is asked again on a
   later run, never judged.

A real stop that comes later (replayed after a reconnect) is a duplicate: answered, no
second CDR, the energy difference logged (Charging.stop).

Ops close a session by hand with close_session (the CLI), through the same path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from cpo_gateway import logs
from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.evidence import Evidence
from cpo_gateway.bridge.model import CommandStatus, ConnectorState
from cpo_gateway.bridge.ports import ChargerControl, SessionRecord, SessionState, TxRecord
from cpo_gateway.bridge.storage import ReconcileStore
from cpo_gateway.bridge.transactions import Charging

log = logs.get(__name__)
_FREE = frozenset({ConnectorState.AVAILABLE, ConnectorState.PREPARING})
_UNREACHABLE = frozenset({CommandStatus.TIMEOUT, CommandStatus.OFFLINE})
PROBE_WAIT_S = 10.0  # at most, for the meter values asked for to arrive
RECONCILED = "reconciled"
CLOSED_BY_OPERATOR = "closed by operator"


@dataclass(frozen=True, slots=True)
class CloseResult:
    closed: bool
    detail: str


class Reconciler:
    def __init__(
        self,
        store: ReconcileStore,
        chargers: ChargerControl,
        charging: Charging,
        states: Callable[[str, int], ConnectorState | None],
        evidence: Evidence,
        *,
        grace_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._chargers = chargers
        self._charging = charging
        self._states = states
        self._evidence = evidence
        self._grace_s = grace_s
        self._probe_s = min(grace_s, PROBE_WAIT_S)
        self._clock = clock
        self._since = clock()  # nothing is known from before the gateway started
        self._stop_asked: dict[int, float] = {}  # transaction -> when a stop was accepted
        self._lock = asyncio.Lock()

    @property
    def grace_s(self) -> float:
        return self._grace_s

    async def run(self) -> int:
        """Look at every open transaction once; returns how many sessions were closed."""
        async with self._lock:  # one run at a time, however it is called
            closed = 0
            open_now = await self._store.open_transactions()
            for tx, session in open_now:
                if await self._check(tx, session):
                    closed += 1
            still_open = {tx.id for tx, _ in open_now}
            for tx_id in [t for t in self._stop_asked if t not in still_open]:
                del self._stop_asked[tx_id]
            return closed

    def _last_evidence(self, tx: TxRecord) -> float:
        reading = self._evidence.last(tx.charge_point, tx.connector)
        if reading is not None and reading.transaction_id == tx.id:
            return max(reading.at, self._since)
        return self._since

    async def _check(self, tx: TxRecord, session: SessionRecord) -> bool:
        cp, connector = tx.charge_point, tx.connector
        state = self._states(cp, connector)
        if state not in _FREE or not self._chargers.is_connected(cp):
            self._stop_asked.pop(tx.id, None)
            return False
        now = self._clock()
        last = self._last_evidence(tx)
        if now - last < self._grace_s:
            return False
        since = rfc3339(last)
        asked = self._stop_asked.get(tx.id)
        if asked is not None:
            if now - asked < self._grace_s:
                return False
            detail = (
                f"{RECONCILED}: the charger accepted a stop at {rfc3339(asked)} but never sent "
                f"it, reports {state.value} and no meter values since {since}"
            )
            return await self._close(tx, session, detail)
        log.info(
            "session.ghost_suspected",
            session_id=session.id,
            transaction_id=tx.id,
            charge_point_id=cp,
            connector_id=connector,
            state=state.value,
            no_meter_values_since=since,
        )
        # 1. What does it meter on that connector?
        seen = self._evidence.readings(cp, connector)
        result = await self._chargers.trigger_meter_values(cp, connector)
        if result.status in _UNREACHABLE:
            return False
        if result.accepted:
            await self._evidence.wait_reading(cp, connector, seen, within_s=self._probe_s)
            if self._last_evidence(tx) > last:
                log.info("session.ghost_alive", session_id=session.id, transaction_id=tx.id)
                return False
        # 2. Does it know the transaction?
        result = await self._chargers.remote_stop(cp, tx.id, tx.charger_key)
        if result.status in _UNREACHABLE:
            return False
        if result.accepted:
            self._stop_asked[tx.id] = self._clock()
            log.warning("session.ghost_stop_accepted", session_id=session.id, transaction_id=tx.id)
            return False
        detail = (
            f"{RECONCILED}: the charger reports {state.value} and no meter values since "
            f"{since}; asked to stop the transaction it answered {result.status.value}"
        )
        return await self._close(tx, session, detail)

    async def _close(self, tx: TxRecord, session: SessionRecord, detail: str) -> bool:
        closed = await self._charging.close(tx, detail, RECONCILED)
        if closed is None:
            return False
        log.warning(
            "session.reconciled",
            session_id=session.id,
            transaction_id=tx.id,
            charge_point_id=tx.charge_point,
            connector_id=tx.connector,
            meter_stop_wh=closed.meter_stop_wh,
            stopped_at=closed.stopped_at,
            detail=detail,
        )
        return True

    async def close_session(self, session_id: str, reason: str) -> CloseResult:
        """Close a session by hand (ops): a running one with a CDR of the energy known."""
        session = await self._store.session(session_id)
        if session is None:
            return CloseResult(False, "no such session")
        if session.state not in (SessionState.PENDING, SessionState.ACTIVE):
            return CloseResult(False, f"the session has already ended ({session.state})")
        detail = f"{CLOSED_BY_OPERATOR}: {reason}"
        tx = (
            None
            if session.transaction_id is None
            else await self._store.transaction(session.transaction_id)
        )
        if tx is None:
            ok = await self._store.set_session_state(
                session.id, SessionState.FAILED, detail, only_from=session.state
            )
            return CloseResult(ok, "closed; it had not begun" if ok else "it changed meanwhile")
        closed = await self._charging.close(tx, detail, CLOSED_BY_OPERATOR)
        if closed is None:
            return CloseResult(False, "the session has already ended")
        log.warning(
            "session.closed_by_operator",
            session_id=session.id,
            transaction_id=tx.id,
            meter_stop_wh=closed.meter_stop_wh,
            reason=reason,
        )
        return CloseResult(True, f"closed at {closed.stopped_at}, meter {closed.meter_stop_wh} Wh")
