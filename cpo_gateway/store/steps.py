"""Transactions a charger named itself: found by its name, and the numbered reports it sent
about them (see model.TransactionStep).

One row per (charger, key, sequence): a report resent finds its row, so it is one record
however often it comes, and reading them by sequence gives the charger's own order.
"""

from __future__ import annotations

from cpo_gateway.bridge.model import AuthDecision, LateReport, StepKind, TransactionStep
from cpo_gateway.bridge.ports import SessionState, TxRecord
from cpo_gateway.bridge.storage import LateRecorded, StopOutbox
from cpo_gateway.store.db import Database
from cpo_gateway.store.outbox import insert_outbox_sync
from cpo_gateway.store.sessions import _merge_samples, _one_sync, _session, _tx
from cpo_gateway.store.signed import record_signed_sync
from cpo_gateway.store.sql import Conn


class StepsRepo:
    db: Database

    async def transaction_by_key(self, charge_point: str, charger_key: str) -> TxRecord | None:
        row = await self.db.one(
            "SELECT * FROM transactions WHERE charge_point = ? AND charger_key = ?",
            (charge_point, charger_key),
        )
        return None if row is None else _tx(row)

    async def start_earlier(self, tx_id: int, started_at: str) -> None:
        """Move a transaction's start back to `started_at` (never forward)."""
        await self.db.write(
            "UPDATE transactions SET started_at = :at WHERE id = :tx AND started_at > :at",
            {"tx": tx_id, "at": started_at},
        )

    async def identify_start(
        self, tx_id: int, id_tag: str, user_id: str, decision: AuthDecision
    ) -> bool:
        """Give a transaction begun without an idTag its idTag, and its session the user,
        the partner and how it was authorized; False when it had an idTag already (a
        resent start changes nothing)."""

        def work(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE transactions SET id_tag = ? WHERE id = ? AND id_tag = ''", (id_tag, tx_id)
            )
            if cur.rowcount == 0:
                return False
            conn.execute(
                "UPDATE sessions SET id_tag = ?, user_id = ?, emp = ?, auth_status = ?, "
                "auth_path = ? WHERE transaction_id = ? AND id_tag = ''",
                (
                    id_tag,
                    user_id,
                    decision.partner,
                    decision.status.value,
                    decision.path.value,
                    tx_id,
                ),
            )
            return True

        return await self.db.run_write(work)

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
        """Fill a transaction and its session with what a late report says (a transaction
        begun or ended by reports the charger numbered after it), and release its CDR when
        the session was held for `held_detail` (then finished with `released_detail`): one
        commit.

        Only what is still unknown is filled (no idTag, connector 0, no start reading), so a
        resent report changes nothing; a Started moves the start time back (never forward)
        and gives the start reading. The CDR is judged (`outbox`) once the transaction's
        Started is in, this report or one kept before: rows are queued and the session
        finished only if it is still held for `held_detail` (compare-and-set), a hold
        reason replaces the detail, and no rows and no hold finish it with nothing owed.
        None when no transaction has this key."""

        def work(conn: Conn) -> LateRecorded | None:
            row = _one_sync(
                conn,
                "SELECT * FROM transactions WHERE charge_point = ? AND charger_key = ?",
                (report.charge_point_id, report.charger_key),
            )
            if row is None:
                return None
            merged = _merge_samples(dict(row), report.samples)
            first = min(report.samples, key=lambda s: s.timestamp) if report.samples else None
            conn.execute(
                "UPDATE transactions SET first_wh = ?, first_wh_at = ?, last_wh = ?, "
                "last_wh_at = ?, charge_start_at = ?, charge_stop_at = ?, "
                "connector = CASE WHEN connector = 0 THEN ? ELSE connector END, "
                "id_tag = CASE WHEN COALESCE(id_tag, '') = '' THEN ? ELSE id_tag END, "
                "started_at = CASE WHEN ? AND (started_at IS NULL OR started_at > ?) "
                "THEN ? ELSE started_at END, "
                "meter_start_wh = CASE WHEN ? AND meter_start_wh IS NULL THEN ? "
                "ELSE meter_start_wh END WHERE id = ?",
                (
                    *merged.values(),
                    report.connector_id,
                    report.id_tag or row["id_tag"],
                    report.started,
                    report.timestamp,
                    report.timestamp,
                    report.started,
                    None if first is None else round(first.wh),
                    row["id"],
                ),
            )
            record_signed_sync(conn, row["id"], report.samples)
            if report.connector_id and evse_id is not None:
                conn.execute(
                    "UPDATE sessions SET connector = ?, evse_id = ? WHERE id = ? AND connector = 0",
                    (report.connector_id, evse_id, row["session_id"]),
                )
            if report.id_tag and decision is not None:
                conn.execute(
                    "UPDATE sessions SET id_tag = ?, user_id = ?, emp = ?, auth_status = ?, "
                    "auth_path = ? WHERE id = ? AND COALESCE(id_tag, '') = ''",
                    (
                        report.id_tag,
                        user_id or report.id_tag,
                        decision.partner,
                        decision.status.value,
                        decision.path.value,
                        row["session_id"],
                    ),
                )
            trow = _one_sync(conn, "SELECT * FROM transactions WHERE id = ?", (row["id"],))
            srow = _one_sync(conn, "SELECT * FROM sessions WHERE id = ?", (row["session_id"],))
            assert trow is not None and srow is not None
            tx, session = _tx(trow), _session(srow)
            held = session.state == SessionState.NEEDS_REVIEW and session.detail == held_detail
            started = report.started or _has_started(
                conn, report.charge_point_id, report.charger_key
            )
            if not held or not started:
                return LateRecorded(tx, session, released=False)
            out = outbox(tx, session)
            if out.hold is not None:
                if out.hold != held_detail:
                    conn.execute(
                        "UPDATE sessions SET detail = ? WHERE id = ? AND state = 'needs_review'",
                        (out.hold, session.id),
                    )
                srow = _one_sync(conn, "SELECT * FROM sessions WHERE id = ?", (session.id,))
                assert srow is not None
                return LateRecorded(tx, _session(srow), released=False)
            cur = conn.execute(
                "UPDATE sessions SET state = 'finished', detail = ? "
                "WHERE id = ? AND state = 'needs_review' AND detail = ?",
                (released_detail, session.id, held_detail),
            )
            if cur.rowcount == 0:
                return LateRecorded(tx, session, released=False)
            insert_outbox_sync(conn, out.rows, now)
            srow = _one_sync(conn, "SELECT * FROM sessions WHERE id = ?", (session.id,))
            assert srow is not None
            return LateRecorded(tx, _session(srow), released=bool(out.rows))

        return await self.db.run_write(work)

    async def has_started(self, charge_point: str, charger_key: str) -> bool:
        """Whether a Started of this transaction has been kept."""
        value = await self.db.scalar(_STARTED_SQL, (charge_point, charger_key))
        return value is not None

    async def step_seen(self, charge_point: str, charger_key: str, sequence: int) -> bool:
        value = await self.db.scalar(
            "SELECT 1 FROM transaction_steps "
            "WHERE charge_point = ? AND charger_key = ? AND sequence = ?",
            (charge_point, charger_key, sequence),
        )
        return value is not None

    async def record_step(self, step: TransactionStep, now: float) -> None:
        """Keep a report; one already kept under its sequence stays as it was."""
        await self.db.write(
            "INSERT INTO transaction_steps (charge_point, charger_key, sequence, kind, "
            "trigger, reason, remote_id, queued, happened_at, received_at) "
            "VALUES (:cp, :key, :seq, :kind, :trigger, :reason, :remote, :queued, :at, :now) "
            "ON CONFLICT DO NOTHING",
            {
                "cp": step.charge_point_id,
                "key": step.charger_key,
                "seq": step.sequence,
                "kind": step.kind.value,
                "trigger": step.trigger,
                "reason": step.reason,
                "remote": step.remote_id,
                "queued": int(step.queued),
                "at": step.timestamp,
                "now": now,
            },
        )

    async def steps_of(self, charge_point: str, charger_key: str) -> list[TransactionStep]:
        """A transaction's reports in the charger's order (by sequence)."""
        rows = await self.db.all(
            "SELECT * FROM transaction_steps WHERE charge_point = ? AND charger_key = ? "
            "ORDER BY sequence",
            (charge_point, charger_key),
        )
        return [
            TransactionStep(
                charge_point_id=r["charge_point"],
                charger_key=r["charger_key"],
                sequence=r["sequence"],
                kind=StepKind(r["kind"]),
                timestamp=r["happened_at"],
                trigger=r["trigger"],
                reason=r["reason"],
                remote_id=r["remote_id"],
                queued=bool(r["queued"]),
            )
            for r in rows
        ]


_STARTED_SQL = (
    "SELECT 1 FROM transaction_steps WHERE charge_point = ? AND charger_key = ? "
    "AND kind = 'started' LIMIT 1"
)


def _has_started(conn: Conn, charge_point: str, charger_key: str) -> bool:
    return _one_sync(conn, _STARTED_SQL, (charge_point, charger_key)) is not None
