"""Reports of a charger-named transaction that come after its end (its Ended came first).

An Ended numbered after reports not kept (seqNo above 0, no Started kept) that does not say
itself who charged and where (no idTag, no connector) would make a CDR to no one, or to the
charger's first EVSE. Its CDR is held instead, as needs_review with WAITING_DETAIL, in the
stop's commit. Each late Started or Updated fills in what is still unknown (the idTag,
judged by the chain as a start's is; the connector; a Started's time and first reading) and,
once the Started is in, the CDR is judged again in that same commit: queued with a
compare-and-set on the held state, so two paths cannot both release it. A Started that never
comes leaves the session held, visible to ops, who cannot release it to no one (held.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from cpo_gateway import logs
from cpo_gateway.bridge.auth import Authorizer
from cpo_gateway.bridge.ids import try_normalise_uid
from cpo_gateway.bridge.model import LateReport, TransactionStop
from cpo_gateway.bridge.ports import Outgoing, SessionOrigin, SessionRecord, TxRecord
from cpo_gateway.bridge.storage import LateRecorded, StepStore, StopOutbox

log = logs.get(__name__)
WAITING_DETAIL = "waiting for earlier events of the transaction"
COMPLETED_DETAIL = "its earlier events came: CDR judged then"


def incomplete(tx: TxRecord, session: SessionRecord) -> bool:
    """A session that cannot be billed yet: the connector that served it is not known (an
    Ended without an EVSE, placed on the charger's first), or no idTag has named who charged."""
    return tx.connector == 0 or (session.emp is None and not session.id_tag)


class LateReports:
    """Holds the CDR of an Ended that came first, and fills it in from the late reports."""

    def __init__(
        self,
        steps: StepStore,
        authorizer: Authorizer,
        evse_of: Callable[[str, int], str | None],  # (charge point, connector) -> EVSE ID
        cdr_rows: StopOutbox,  # what a complete session owes (Charging._stop_rows)
        clock: Callable[[], float],
    ) -> None:
        self._steps = steps
        self._auth = authorizer
        self._evse_of = evse_of
        self._cdr_rows = cdr_rows
        self._clock = clock

    def rows(self, tx: TxRecord, session: SessionRecord) -> Outgoing:
        """As cdr_rows, for a transaction whose Started has not come: held while it lacks
        what the CDR needs (an EVSE, an idTag), so the Started can still complete it."""
        if session.origin != SessionOrigin.LATE and incomplete(tx, session):
            log.info("cdr.waiting", session_id=session.id, transaction_id=tx.id)
            return Outgoing(hold=WAITING_DETAIL)
        return self._cdr_rows(tx, session)

    async def awaits_start(self, stop: TransactionStop) -> bool:
        """An Ended numbered after reports not kept, without an idTag or a connector of its
        own, of a transaction whose Started has not come: the Started may still say them."""
        if stop.charger_key is None or not stop.sequence or (stop.id_tag and stop.connector_id):
            return False
        return not await self._steps.has_started(stop.charge_point_id, stop.charger_key)

    async def fill(self, report: LateReport) -> LateRecorded | None:
        """Fill a transaction in from a late report and release its held CDR when it is
        complete, in one commit (None: no transaction has the report's key)."""
        decision = uid = None
        if report.id_tag:
            decision = self._auth.decide_cached(report.id_tag) or await self._auth.authorize(
                report.id_tag
            )
            uid = decision.uid or try_normalise_uid(report.id_tag)
        connector = report.connector_id
        evse = self._evse_of(report.charge_point_id, connector) if connector else None
        if connector and evse is None:
            connector = 0  # a connector the stations file does not name places nothing
        recorded = await self._steps.record_late(
            dataclasses.replace(report, connector_id=connector),
            decision=decision,
            user_id=uid,
            evse_id=evse,
            held_detail=WAITING_DETAIL,
            released_detail=COMPLETED_DETAIL,
            outbox=self.rows,
            now=self._clock(),
        )
        if recorded is not None:
            log.info(
                "tx.late_report",
                transaction_id=recorded.tx.id,
                session_id=recorded.session.id,
                started=report.started,
                released=recorded.released,
                state=recorded.session.state.value,
            )
        return recorded
