"""What chargers report: transactions become sessions, sessions become CDRs.

Every reply a charger gets for a transaction message is given after the commit that holds
its data; duplicates are answered from what was stored, without side effects. A start
with the idTag of a remote start the EMP was told failed is a "late" session: recorded for
that EMP, stopped at once and its CDR kept locally (see bridge/remote.py).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence

from cpo_gateway import logs
from cpo_gateway.bridge.auth import Authorizer
from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.cdr import CDR_KIND, build_cdr, build_session_update, cdr_to_dict, review
from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.evidence import Evidence
from cpo_gateway.bridge.ids import try_normalise_uid
from cpo_gateway.bridge.late_reports import LateReports
from cpo_gateway.bridge.model import (
    AuthDecision,
    AuthPath,
    AuthStatus,
    Cdr,
    LateReport,
    MeterReport,
    Started,
    TransactionStart,
    TransactionStep,
    TransactionStop,
    UserKind,
)
from cpo_gateway.bridge.owed import Owed, SessionPhase
from cpo_gateway.bridge.pending import PendingStarts
from cpo_gateway.bridge.ports import (
    NewOutbox,
    Outgoing,
    SessionOrigin,
    SessionRecord,
    SessionState,
    TxRecord,
)
from cpo_gateway.bridge.storage import StepStore, TransactionStore

log = logs.get(__name__)
# The origin of a session a charger began for a remote start the EMP was told failed.
LATE = SessionOrigin.LATE
LATE_DETAIL = "late start after the EMP was told it failed: stopped, CDR kept locally"


class Charging:
    def __init__(
        self,
        store: TransactionStore,
        catalogue: Catalogue,
        authorizer: Authorizer,
        pending: PendingStarts,
        partners: Mapping[str, str],  # EMP name -> partner identifier
        *,
        steps: StepStore,
        cdr_on_start: bool,
        clock: Callable[[], float],
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        stop_late_start: Callable[[str, int, str], None] = lambda cp, tx, session: None,
        evidence: Evidence | None = None,
        follows: Mapping[str, str] | None = None,
        update_interval_s: float = 60.0,
    ) -> None:
        """`partners`: the EMPs owed CDRs (name -> partner identifier); `follows`: the EMPs
        owed session updates, a row at the start, the energy so far at most every
        `update_interval_s` per session while it runs, and one at the end."""
        self._follows = follows or {}
        self._update_interval_s = update_interval_s
        self._updated_at: dict[int, float] = {}  # transaction -> when its last update was queued
        self._stop_late_start = stop_late_start  # (charge point, transaction, session)
        self._store = store
        self._steps = steps
        self._catalogue = catalogue
        self._auth = authorizer
        self._pending = pending
        self._partners = partners
        self._cdr_on_start = cdr_on_start
        self._clock = clock
        self._new_id = new_id
        self._evidence = evidence or Evidence(catalogue, clock)
        self._late = LateReports(steps, authorizer, self.evse_of, self._stop_rows, clock)

    def evse_of(self, charge_point: str, connector: int) -> str | None:
        return evse_at(self._catalogue, charge_point, connector)

    def _update_rows(
        self, tx: TxRecord, session: SessionRecord, phase: SessionPhase
    ) -> tuple[NewOutbox, ...]:
        """The session update owed for a session, if its EMP follows sessions (a late start
        is none of the EMP's business: it was told the start failed)."""
        partner = self._follows.get(session.emp or "")
        if partner is None or session.emp is None or session.origin == LATE:
            return ()
        evse = session.evse_id or self.evse_of(tx.charge_point, tx.connector)
        if evse is None:
            return ()
        update = build_session_update(tx, session, evse, partner, phase, self._clock())
        return (NewOutbox(session.emp, Owed.SESSION, session.id, update.to_dict()),)

    def _progress_rows(self, tx: TxRecord, session: SessionRecord) -> Sequence[NewOutbox]:
        if tx.stopped_at is not None or session.state is not SessionState.ACTIVE:
            return ()
        return self._update_rows(tx, session, SessionPhase.CHARGING)

    def _stop_rows(self, tx: TxRecord, session: SessionRecord) -> Outgoing:
        """What a stop owes: the CDR (or the hold) and, unless held, the final update."""
        out = self._cdr_rows(tx, session)
        if out.hold is not None:
            return out
        return Outgoing((*out.rows, *self._update_rows(tx, session, SessionPhase.ENDED)))

    def _update_due(self, tx_id: int) -> bool:
        """Whether a progress update may be queued for a transaction now (and count it)."""
        if not self._follows:
            return False
        now = self._clock()
        last = self._updated_at.get(tx_id)
        if last is not None and now - last < self._update_interval_s:
            return False
        self._updated_at[tx_id] = now
        return True

    def _cdr_rows(self, tx: TxRecord, session: SessionRecord) -> Outgoing:
        """The CDR owed for a session, or the reason to hold it for review: used
        inside the store's transaction, so the hold and the stop share one commit."""
        if session.origin == LATE:
            log.info("cdr.kept_locally", session_id=session.id, reason=LATE_DETAIL)
            return Outgoing()
        owed = session_cdr(self._catalogue, self._partners, tx, session)
        if owed is None:
            if session.emp is None:
                log.info("cdr.kept_locally", session_id=session.id, reason="no EMP authorized it")
            return Outgoing()
        cdr, speed_kw = owed
        reason = review(cdr, speed_kw, self._clock())
        if reason is not None:
            log.warning(
                "cdr.needs_review" if tx.stopped_at else "cdr.start_post_withheld",
                session_id=session.id,
                transaction_id=tx.id,
                energy_kwh=cdr.energy_kwh,
                reason=reason,
            )
            return Outgoing(hold=reason if tx.stopped_at else None)
        return Outgoing((cdr_row(session.emp or "", cdr),))

    async def start(self, start: TransactionStart) -> Started:
        remote_emp = self._pending.emp_of(start.id_tag)
        # A remote start the EMP was told failed, begun late at this charger; unless a pending
        # retry with the same idTag binds it below.
        late_emp = self._pending.failed_emp(start.charge_point_id, start.id_tag)
        if late_emp is not None:
            decision: AuthDecision | None = AuthDecision(
                AuthStatus.INVALID, AuthPath.REMOTE, late_emp, None
            )
        elif remote_emp is not None:  # a remote start's own idTag: bound below if pending
            decision = AuthDecision(AuthStatus.ACCEPTED, AuthPath.REMOTE, remote_emp, None)
        else:
            decision = self._auth.decide_cached(start.id_tag)
        if decision is None:
            # The chain would look further (database, EMP): not for a replayed start.
            existing = await self._store.find_start(start)
            if existing is not None:
                session = await self._store.session(existing.session_id)
                log.info("tx.start_duplicate", transaction_id=existing.id)
                return Started(existing.id, _stored_decision(session))
            place = self._catalogue.place_of(start.charge_point_id, start.connector_id)
            decision = await self._auth.authorize(start.id_tag, place=place)
        uid = decision.uid or try_normalise_uid(start.id_tag)
        new = SessionRecord(
            id=self._new_id(),
            evse_id=self.evse_of(start.charge_point_id, start.connector_id),
            charge_point=start.charge_point_id,
            connector=start.connector_id,
            emp=decision.partner,
            origin=SessionOrigin.CARD if late_emp is None else LATE,
            user_kind=UserKind.RFID.value,
            user_id=uid or start.id_tag,
            id_tag=start.id_tag,
            auth_status=decision.status.value,
            auth_path=decision.path.value,
            state=SessionState.ACTIVE,
            created_at=rfc3339(self._clock()),
            expires_at=None,
            transaction_id=None,
        )

        # A start for a pending remote start that has failed meanwhile is a late one.
        late = (
            dataclasses.replace(
                new,
                emp=remote_emp,
                origin=LATE,
                auth_status=AuthStatus.INVALID.value,
                auth_path=AuthPath.REMOTE.value,
            )
            if remote_emp is not None and late_emp is None
            else None
        )

        def rows(tx: TxRecord, session: SessionRecord) -> Sequence[NewOutbox]:
            # A start-time CDR that fails review is not sent; the stop's CDR is judged again.
            cdr = self._cdr_rows(tx, session).rows if self._cdr_on_start else ()
            return (*cdr, *self._update_rows(tx, session, SessionPhase.STARTED))

        # One trip to the database: the replay check, binding a pending remote start (its
        # idTag is known in memory) and the insert happen in one transaction.
        recorded = await self._store.record_start(
            start,
            bind_pending=remote_emp is not None,
            new_session=new,
            outbox=rows,
            now=self._clock(),
            late_session=late,
        )
        tx, session = recorded.tx, recorded.session
        if recorded.duplicate:
            log.info("tx.start_duplicate", transaction_id=tx.id)
            return Started(tx.id, _stored_decision(session))
        if session.emp in self._follows:
            self._updated_at[tx.id] = self._clock()  # its first update is the start's
        if session.origin == LATE:
            # Acknowledged (after the commit) and stopped at once, in its own task: a handler
            # never awaits a call to its own charger.
            decision = AuthDecision(AuthStatus.INVALID, AuthPath.REMOTE, session.emp, None)
            self._pending.bind(start.id_tag)
            await self._store.set_session_state(
                session.id, SessionState.ACTIVE, LATE_DETAIL, only_from=SessionState.ACTIVE
            )
            log.warning(
                "session.late_start",
                session_id=session.id,
                transaction_id=tx.id,
                emp=session.emp,
                charge_point_id=start.charge_point_id,
            )
            self._stop_late_start(start.charge_point_id, tx.id, session.id)
        elif session.id != new.id:  # a pending remote start was bound
            self._pending.bind(start.id_tag)
            decision = AuthDecision(AuthStatus.ACCEPTED, AuthPath.REMOTE, session.emp, None)
        self._evidence.started(start.charge_point_id, start.connector_id, tx.id)
        log.info(
            "tx.started",
            transaction_id=tx.id,
            session_id=session.id,
            charge_point_id=start.charge_point_id,
            connector_id=start.connector_id,
            auth_path=decision.path.value,
            auth_status=decision.status.value,
        )
        return Started(tx.id, decision)

    async def identify(self, tx_id: int, id_tag: str) -> AuthDecision | None:
        """The idTag of a transaction begun without one (core.identify_start)."""
        decision = self._auth.decide_cached(id_tag) or await self._auth.authorize(id_tag)
        uid = decision.uid or try_normalise_uid(id_tag)
        if not await self._store.identify_start(tx_id, id_tag, uid or id_tag, decision):
            return None
        log.info(
            "tx.identified",
            transaction_id=tx_id,
            auth_status=decision.status.value,
            auth_path=decision.path.value,
        )
        return decision

    async def stop(self, stop: TransactionStop) -> AuthDecision | None:
        # One trip to the database, except for a stop of a transaction never seen that
        # carries an idTag: that idTag is judged (whitelist and cache only) between two.
        orphan_decision: AuthDecision | None = None

        def orphan() -> SessionRecord | None:
            if stop.id_tag and orphan_decision is None:
                return None
            return self._orphan_session(stop, orphan_decision)

        rows = self._late.rows if await self._late.awaits_start(stop) else self._stop_rows
        recorded = await self._store.record_stop(
            stop, orphan_session=orphan, outbox=rows, now=self._clock()
        )
        if recorded is None:
            # Never ask an EMP online inside a StopTransaction: the charger would wait.
            assert stop.id_tag, "only an orphan with an idTag waits for a decision"
            orphan_decision = await self._auth.authorize(stop.id_tag, online=False)
            recorded = await self._store.record_stop(
                stop, orphan_session=orphan, outbox=rows, now=self._clock()
            )
            assert recorded is not None, "an orphan session is always made with a decision"
        tx, session, dup = recorded.tx, recorded.session, recorded.duplicate
        self._evidence.ended(stop.charge_point_id, tx.id)
        self._updated_at.pop(tx.id, None)
        if (
            dup
            and tx.meter_stop_wh is not None
            and stop.meter_stop_wh is not None
            and stop.meter_stop_wh != tx.meter_stop_wh
        ):
            # A late stop of a transaction closed without it (reconciled or by ops): its
            # CDR has gone with the energy known then; the difference is for ops to settle.
            log.warning(
                "tx.late_stop",
                transaction_id=tx.id,
                session_id=session.id,
                stored_wh=tx.meter_stop_wh,
                reported_wh=stop.meter_stop_wh,
                difference_wh=stop.meter_stop_wh - tx.meter_stop_wh,
            )
        made_orphan = not dup and session.origin == SessionOrigin.ORPHAN
        log.info(
            "tx.stopped" if not dup else "tx.stop_duplicate",
            transaction_id=tx.id,
            session_id=session.id,
            known=not made_orphan,
        )
        if made_orphan:
            return orphan_decision
        # The idTag was decided at the start; a stop never re-judges it.
        return _stored_decision(session) if stop.id_tag else None

    async def late(self, report: LateReport) -> AuthDecision | None:
        """A Started or Updated of a transaction whose Ended came first (late_reports.py):
        the decision on its idTag that stands (None: it carries none, or no such key)."""
        recorded = await self._late.fill(report)
        if recorded is None or not report.id_tag:
            return None
        return _stored_decision(recorded.session)

    def _orphan_session(
        self, stop: TransactionStop, decision: AuthDecision | None
    ) -> SessionRecord:
        log.warning(
            "tx.orphan_stop",
            charge_point_id=stop.charge_point_id,
            transaction_id=stop.transaction_id,
        )
        connector = stop.connector_id or 0
        if self.evse_of(stop.charge_point_id, connector) is None:
            connector = 0
        return SessionRecord(
            id=self._new_id(),
            evse_id=self.evse_of(stop.charge_point_id, connector),
            charge_point=stop.charge_point_id,
            connector=connector,
            emp=decision.partner if decision and decision.status is AuthStatus.ACCEPTED else None,
            origin=SessionOrigin.ORPHAN,
            user_kind=UserKind.RFID.value,
            user_id=(decision.uid if decision else None) or stop.id_tag,
            id_tag=stop.id_tag,
            auth_status=decision.status.value if decision else None,
            auth_path=decision.path.value if decision else AuthPath.NONE.value,
            state=SessionState.ACTIVE,
            created_at=rfc3339(self._clock()),
            expires_at=None,
            transaction_id=None,
        )

    async def close(self, tx: TxRecord, detail: str, reason: str) -> TxRecord | None:
        """End an open transaction the charger will not stop, as a stop would: at the last
        reading known (its time and register), so the CDR comes from the same builder in the
        same commit. None when it had ended already."""
        wh = tx.last_wh if tx.last_wh is not None else (tx.meter_start_wh or 0.0)
        at = tx.last_wh_at or tx.started_at or rfc3339(self._clock())
        stop = TransactionStop(tx.charge_point, tx.id, round(wh), at, reason=reason)
        recorded = await self._store.record_stop(
            stop,
            orphan_session=lambda: None,
            outbox=self._stop_rows,
            now=self._clock(),
            session_detail=detail,
        )
        if recorded is None or recorded.duplicate:
            return None
        self._evidence.ended(tx.charge_point, tx.id)
        self._updated_at.pop(tx.id, None)
        return recorded.tx

    async def meter(self, report: MeterReport) -> None:
        if not report.samples:
            return
        self._evidence.reading(report.charge_point_id, report.connector_id, report.transaction_id)
        tx_id = report.transaction_id
        if tx_id is None and report.charger_key is not None:
            tx = await self._store.transaction_by_key(report.charge_point_id, report.charger_key)
            tx_id = None if tx is None else tx.id
        if tx_id is None:
            return
        if self._update_due(tx_id):
            await self._store.record_meter(
                report.charge_point_id,
                tx_id,
                report.samples,
                outbox=self._progress_rows,
                now=self._clock(),
            )
            return
        await self._store.record_meter(report.charge_point_id, tx_id, report.samples)

    async def step_seen(self, step: TransactionStep) -> bool:
        """Whether this numbered report was kept before (a resend: answer, change nothing)."""
        return await self._steps.step_seen(step.charge_point_id, step.charger_key, step.sequence)

    async def record_step(self, step: TransactionStep) -> None:
        """Keep a report once what it said is stored (a resend of it is then recognised)."""
        await self._steps.record_step(step, self._clock())
        log.info(
            "tx.step",
            charge_point_id=step.charge_point_id,
            charger_key=step.charger_key,
            sequence=step.sequence,
            kind=step.kind.value,
            trigger=step.trigger,
            reason=step.reason,
            remote_id=step.remote_id,
            queued=step.queued,
        )


def evse_at(catalogue: Catalogue, charge_point: str, connector: int) -> str | None:
    conn = catalogue.connector_at(charge_point, connector)
    if conn is None and connector == 0:
        # An orphan stop does not say its connector: use the charger's first EVSE.
        conns = catalogue.connectors_of(charge_point)
        conn = conns[0] if conns else None
    return None if conn is None else conn.evse_id


def session_cdr(
    catalogue: Catalogue, partners: Mapping[str, str], tx: TxRecord, session: SessionRecord
) -> tuple[Cdr, float | None] | None:
    """The CDR a session owes its EMP and the rated power (kW) of the connector that served
    it (None when the stations file no longer names it); None when no EMP is owed one."""
    partner = partners.get(session.emp or "")
    evse = session.evse_id or evse_at(catalogue, tx.charge_point, tx.connector)
    if partner is None or session.emp is None or evse is None:
        return None
    served = catalogue.connector_at(tx.charge_point, tx.connector)
    if served is not None and served.evse_id == evse:
        speed: float | None = served.speed_kw
    else:  # an orphan (connector 0): the fastest connector behind the EVSE bounds it
        speed = max((c.speed_kw for c in catalogue.evse(evse)), default=None)
    return build_cdr(tx, session, evse, partner), speed


def cdr_row(emp: str, cdr: Cdr) -> NewOutbox:
    return NewOutbox(emp, CDR_KIND, cdr.session_id, cdr_to_dict(cdr))


def _stored_decision(session: SessionRecord | None) -> AuthDecision:
    if session is None or session.auth_status is None:
        return AuthDecision(AuthStatus.ACCEPTED, AuthPath.REMOTE)
    return AuthDecision(
        AuthStatus(session.auth_status), AuthPath(session.auth_path or "none"), session.emp
    )
