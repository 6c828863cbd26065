"""Transactions a charger named itself: found by its name, and the numbered reports it sent
about them (see model.TransactionStep).

One row per (charger, key, sequence): a report resent finds its row, so it is one record
however often it comes, and reading them by sequence gives the charger's own order.
"""

from __future__ import annotations

import sqlite3

from cpo_gateway.bridge.model import AuthDecision, StepKind, TransactionStep
from cpo_gateway.bridge.ports import TxRecord
from cpo_gateway.store.db import Database
from cpo_gateway.store.sessions import _tx


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

        def work(conn: sqlite3.Connection) -> bool:
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
            "INSERT OR IGNORE INTO transaction_steps (charge_point, charger_key, sequence, kind, "
            "trigger, reason, remote_id, queued, happened_at, received_at) "
            "VALUES (:cp, :key, :seq, :kind, :trigger, :reason, :remote, :queued, :at, :now)",
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
