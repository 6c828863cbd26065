"""The outbox as delivery workers take it: rows handed out under a claim, and outcomes that
count only while the claim is still the worker's own.

Several nodes may deliver from one database. `due` claims the rows it hands out in one
UPDATE on the write path: `claimed_by` (this node) and `claimed_until` (epoch seconds).
A row is due while it is pending, its `next_at` has come, it is unclaimed or its claim has
expired, and no earlier pending row of the same EMP, kind and key exists (a session's CDRs
go out in order). On PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`: two nodes
claiming at once lock disjoint rows, and a row another node has just claimed fails the
recheck of `claimed_until` once that node commits. On SQLite the one writer makes the
UPDATE atomic by itself.

An outcome (`mark_delivered`, `mark_retry`, `mark_dead`, `postpone`, `release`) clears the
claim and applies only if this node still holds it: a claim that expired and was taken by
another node is that node's now, and a late outcome changes nothing (logged once, as
`outbox.claim_lost`). So a node killed mid-delivery leaves rows that another node claims
once `claimed_until` has passed: nothing is stuck, and a row the EMP received but whose
outcome was never written goes out a second time (at least once, never lost; a CDR keeps
its session id, so the EMP sees the same CDR again). `taken_from` records the node whose
expired claim was taken over.

Coalescing: a pending status or session update is rewritten in place when a newer one
arrives, possibly while it is on its way (on any node). The payload a row had when `due`
handed it out is kept by the claimant, and an outcome compares it with the payload in the
database: a row rewritten in flight stays pending, due at once, with its newer payload.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Sequence
from typing import Any

import orjson

from cpo_gateway import logs
from cpo_gateway.bridge.owed import COALESCED, Owed
from cpo_gateway.bridge.ports import OutboxItem, OutboxState
from cpo_gateway.store.db import Database
from cpo_gateway.store.sql import Conn, Row, is_postgres

log = logs.get(__name__)

DEFAULT_CLAIM_S = 60.0
NODE_ID_ENV = "CPO_GATEWAY_NODE_ID"
_COALESCED = frozenset(COALESCED)

_DUE = (
    "SELECT o.id FROM outbox AS o WHERE o.state = 'pending' AND o.emp = ? AND o.next_at <= ? "
    "AND (o.claimed_by IS NULL OR o.claimed_until <= ?) "
    "AND NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.state = 'pending' "
    "AND e.emp = o.emp AND e.kind = o.kind AND e.key = o.key AND e.id < o.id) "
    "ORDER BY o.id LIMIT ?"
)
_CLAIM = (
    "UPDATE outbox SET taken_from = claimed_by, claimed_by = ?, claimed_until = ? "
    "WHERE id IN ({due}) RETURNING *"
)
CLAIM_SQLITE = _CLAIM.format(due=_DUE)
CLAIM_PG = _CLAIM.format(due=_DUE + " FOR UPDATE SKIP LOCKED")


def default_node_id() -> str:
    """$CPO_GATEWAY_NODE_ID, else the host name (what [cluster] node_id defaults to)."""
    return os.environ.get(NODE_ID_ENV, "").strip() or socket.gethostname()


def outbox_item(row: Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        emp=row["emp"],
        kind=row["kind"],
        key=row["key"],
        payload=orjson.loads(row["payload"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_at=row["next_at"],
        state=OutboxState(row["state"]),
        last_error=row["last_error"],
        done_at=row["done_at"],
        claimed_by=row["claimed_by"],
        claimed_until=row["claimed_until"],
        taken_from=row["taken_from"],
    )


def claim_due_sync(
    conn: Conn, emp: str, now: float, limit: int, node: str, lease_s: float
) -> list[Row]:
    """Claim up to `limit` due rows for `node` until now + lease_s, in one statement."""
    sql = CLAIM_PG if is_postgres(conn) else CLAIM_SQLITE
    rows: list[Row] = conn.execute(sql, (node, now + lease_s, emp, now, now, limit)).fetchall()
    return sorted(rows, key=lambda r: int(r["id"]))


class OutboxClaims:
    """The delivery side of the outbox: claims and outcomes (see the module docstring)."""

    db: Database
    node: str
    # Claims taken over from another node's (or an earlier run's) expired claim.
    claims_expired: int

    @property
    def _handed_out(self) -> dict[int, str]:
        handed: dict[int, str] = self.__dict__.setdefault("_outbox_handed_out", {})
        return handed

    def _count_taken_over(self, rows: Sequence[Row], node: str) -> None:
        for r in rows:
            if r["taken_from"] is not None:
                self.claims_expired += 1
                log.warning(
                    "outbox.claim_expired",
                    id=r["id"],
                    emp=r["emp"],
                    kind=r["kind"],
                    taken_from=r["taken_from"],
                    node=node,
                )

    async def due(
        self,
        emp: str,
        now: float,
        limit: int,
        *,
        lease_s: float = DEFAULT_CLAIM_S,
        node: str | None = None,
    ) -> list[OutboxItem]:
        """Claim and return due rows, oldest first; rows of one kind and key (a session's
        CDRs) stay in order. Each is this node's until now + lease_s."""
        me = node or self.node
        rows = await self.db.run_write(
            functools.partial(
                claim_due_sync, emp=emp, now=now, limit=limit, node=me, lease_s=lease_s
            )
        )
        self._count_taken_over(rows, me)
        handed = self._handed_out
        for r in rows:
            if r["kind"] in _COALESCED:
                handed[r["id"]] = r["payload"]
        return [outbox_item(r) for r in rows]

    def _sent_payloads(self, ids: Sequence[int]) -> list[tuple[int, str | None]]:
        handed = self._handed_out
        return [(i, handed.pop(i, None)) for i in ids]

    def _lost(self, item_id: int, outcome: str, node: str) -> None:
        log.warning(
            "outbox.claim_lost",
            id=item_id,
            outcome=outcome,
            node=node,
            detail="the claim expired and the row is no longer this node's; outcome dropped",
        )

    async def release_claims(self, node: str | None = None) -> int:
        """Drop every claim `node` holds (at start: an earlier run of this node is gone and
        so is whatever it had in flight); how many."""
        me = node or self.node

        def work(conn: Conn) -> int:
            return int(
                conn.execute(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?",
                    (me,),
                ).rowcount
            )

        return await self.db.run_write(work)

    async def mark_delivered(
        self, ids: Sequence[int], now: float, *, node: str | None = None
    ) -> None:
        me = node or self.node
        sent = self._sent_payloads(ids)

        def work(conn: Conn) -> list[int]:
            lost = []
            for i, p in sent:
                # A row rewritten while in flight is due again, with its new payload (only
                # coalesced rows have a payload in `sent`).
                if (
                    p is not None
                    and conn.execute(
                        "UPDATE outbox SET next_at = ?, attempts = 0, claimed_by = NULL, claimed_until = NULL "
                        "WHERE id = ? AND claimed_by = ? AND payload != ?",
                        (now, i, me, p),
                    ).rowcount
                ):
                    continue
                done = conn.execute(
                    "UPDATE outbox SET state = 'delivered', done_at = ?, "
                    "attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL "
                    "WHERE id = ? AND claimed_by = ? AND (CAST(? AS TEXT) IS NULL OR payload = ?) "
                    "RETURNING kind",
                    (now, i, me, p, p),
                ).fetchone()
                if done is None:
                    lost.append(i)
                    continue
                if done[0] != Owed.STATION:
                    continue
                # A station delivered lets that station's statuses go, in the same commit:
                # a crash in between would hold them back until they died. A newer version
                # still queued means the EMP does not have the current one yet.
                conn.execute(
                    "UPDATE stations_posted SET posted_at = ? WHERE (emp, station_id) IN "
                    "(SELECT emp, key FROM outbox WHERE id = ? AND kind = ?) "
                    "AND NOT EXISTS (SELECT 1 FROM outbox o "
                    "WHERE o.emp = stations_posted.emp AND o.kind = ? "
                    "AND o.key = stations_posted.station_id AND o.state = 'pending')",
                    (now, i, Owed.STATION, Owed.STATION),
                )
            return lost

        for i in await self.db.run_write(work):
            self._lost(i, "delivered", me)

    async def _outcome(
        self, item_id: int, outcome: str, node: str | None, sql: str, params: tuple[Any, ...]
    ) -> bool:
        """One outcome's UPDATE (`sql` ends with the claim's condition); False: not ours."""
        me = node or self.node
        self._handed_out.pop(item_id, None)

        def work(conn: Conn) -> bool:
            return bool(conn.execute(sql, (*params, item_id, me)).rowcount)

        applied = await self.db.run_write(work)
        if not applied:
            self._lost(item_id, outcome, me)
        return applied

    async def mark_retry(
        self, item_id: int, next_at: float, error: str, *, node: str | None = None
    ) -> None:
        await self._outcome(
            item_id,
            "retry",
            node,
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ?, "
            "claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?",
            (next_at, error),
        )

    async def postpone(
        self, item_id: int, next_at: float, reason: str, *, node: str | None = None
    ) -> None:
        """Hold a row back without counting an attempt (e.g. its station is not posted)."""
        await self._outcome(
            item_id,
            "postponed",
            node,
            "UPDATE outbox SET next_at = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?",
            (next_at, reason),
        )

    async def release(self, item_id: int, *, node: str | None = None) -> None:
        """Give a claimed row back unsent, as it was (due again at once)."""
        await self._outcome(
            item_id,
            "released",
            node,
            "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?",
            (),
        )

    async def mark_dead(
        self, item_id: int, error: str, now: float, *, node: str | None = None
    ) -> None:
        me = node or self.node
        ((_, sent),) = self._sent_payloads([item_id])

        def work(conn: Conn) -> bool:
            # The failure was the old payload's: a status rewritten meanwhile gets its own try.
            if (
                sent is not None
                and conn.execute(
                    "UPDATE outbox SET next_at = ?, attempts = 0, last_error = ?, claimed_by = NULL, claimed_until = NULL "
                    "WHERE id = ? AND claimed_by = ? AND payload != ?",
                    (now, error, item_id, me, sent),
                ).rowcount
            ):
                return True
            return bool(
                conn.execute(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, "
                    "last_error = ?, done_at = ?, claimed_by = NULL, claimed_until = NULL "
                    "WHERE id = ? AND claimed_by = ? AND (CAST(? AS TEXT) IS NULL OR payload = ?)",
                    (error, now, item_id, me, sent, sent),
                ).rowcount
            )

        if not await self.db.run_write(work):
            self._lost(item_id, "dead", me)
