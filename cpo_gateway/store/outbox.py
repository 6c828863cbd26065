"""Outbox rows: everything owed to an EMP, written with the change that causes it."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import orjson

from cpo_gateway.bridge.owed import COALESCED, Owed
from cpo_gateway.bridge.ports import NewOutbox, OutboxItem, OutboxStat, OutboxState
from cpo_gateway.store.db import Database
from cpo_gateway.store.outbox_claims import outbox_item
from cpo_gateway.store.sql import Conn

STATUS_KIND = Owed.EVSE_STATUS
# The predicate of the partial index outbox_coalesce (migration 11): an upsert names it
# exactly, so SQLite picks that index as the conflict target.
COALESCED_WHERE = "state = 'pending' AND kind IN ({})".format(
    ", ".join(f"'{kind.value}'" for kind in COALESCED)
)
_COALESCED = frozenset(COALESCED)

_INSERT = (
    "INSERT INTO outbox (emp, kind, key, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_COALESCE = (
    f"{_INSERT} ON CONFLICT (emp, kind, key) WHERE {COALESCED_WHERE} "
    "DO UPDATE SET payload = excluded.payload, created_at = excluded.created_at"
)


def insert_outbox_sync(conn: Conn, rows: Iterable[NewOutbox], now: float) -> None:
    """Insert rows inside the caller's transaction (Database.run_write); statuses coalesce
    per EMP and EVSE, session updates per EMP and session."""
    for row in rows:
        payload = orjson.dumps(row.payload).decode()
        sql = _COALESCE if row.kind in _COALESCED else _INSERT
        due = now if row.due_at is None else row.due_at
        conn.execute(sql, (row.emp, row.kind, row.key, payload, now, due))


def settle_outbox_sync(conn: Conn, rows: Iterable[NewOutbox]) -> int:
    """Rewrite pending rows owed for later (same EMP, kind and key) with what they now say,
    due at `due_at` (None: at once), inside the caller's transaction. A row no longer
    pending (sent when it fell due) is left alone: the partner has had its one answer.
    Returns how many rows were rewritten."""
    settled = 0
    for row in rows:
        cur = conn.execute(
            "UPDATE outbox SET payload = ?, next_at = ? "
            "WHERE emp = ? AND kind = ? AND key = ? AND state = 'pending'",
            (orjson.dumps(row.payload).decode(), row.due_at or 0.0, row.emp, row.kind, row.key),
        )
        settled += cur.rowcount
    return settled


class OutboxRepo:
    """Outbox rows of one database: what is queued, and what operators see and do.
    Handing rows out to delivery and their outcomes: store/outbox_claims.py."""

    db: Database

    async def enqueue(self, rows: Sequence[NewOutbox], now: float) -> None:
        await self.db.run_write(functools.partial(insert_outbox_sync, rows=rows, now=now))

    async def owe(self, rows: Sequence[NewOutbox], now: float) -> None:
        """Rows on their own, each due at its due_at: what a partner's command owes."""
        await self.enqueue(rows, now)

    async def settle(self, rows: Sequence[NewOutbox]) -> int:
        """See settle_outbox_sync; returns how many pending rows were rewritten."""
        return await self.db.run_write(functools.partial(settle_outbox_sync, rows=rows))

    async def queue_owed(self, rows: Sequence[NewOutbox], now: float) -> None:
        """The core's own enqueue (OwedStore): what no stored change writes."""
        await self.enqueue(rows, now)

    async def next_due_at(self, emp: str) -> float | None:
        value = await self.db.scalar(
            # A row claimed by a node is not due before that claim expires.
            "SELECT MIN(CASE WHEN claimed_until > next_at THEN claimed_until ELSE next_at END) "
            "FROM outbox WHERE state = 'pending' AND emp = ?",
            (emp,),
        )
        return None if value is None else float(value)

    async def release_held(self, emp: str, reason_prefix: str, now: float) -> int:
        """Make an EMP's pending rows held back for `reason_prefix` due now; how many."""

        def work(conn: Conn) -> int:
            cur = conn.execute(
                "UPDATE outbox SET next_at = ? WHERE emp = ? AND state = 'pending' "
                "AND next_at > ? AND substr(last_error, 1, ?) = ?",
                (now, emp, now, len(reason_prefix), reason_prefix),
            )
            return cur.rowcount

        return await self.db.run_write(work)

    async def list_outbox(self, state: str | None = None, limit: int = 100) -> list[OutboxItem]:
        if state is None:
            rows = await self.db.all(
                "SELECT * FROM outbox WHERE state != 'delivered' ORDER BY id LIMIT ?", (limit,)
            )
        else:
            rows = await self.db.all(
                "SELECT * FROM outbox WHERE state = ? ORDER BY id LIMIT ?", (state, limit)
            )
        return [outbox_item(r) for r in rows]

    async def states_of(self, kind: str, keys: Sequence[str]) -> dict[str, str]:
        """The newest row's state per key of one kind (the console: a session's CDR)."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = await self.db.all(
            f"SELECT key, state FROM outbox WHERE kind = ? AND key IN ({marks}) ORDER BY id",  # noqa: S608 - only placeholders
            (kind, *keys),
        )
        return {str(r[0]): str(r[1]) for r in rows}

    async def last_statuses(self) -> list[tuple[str, str, str, str]]:
        """(EMP, EVSE ID, status, delivery state) of the newest status row per EMP and EVSE
        still in the outbox (delivered rows are pruned after prune_after_days)."""
        rows = await self.db.all(
            "SELECT o.emp, o.key, o.payload, o.state FROM outbox AS o JOIN ("
            "SELECT MAX(id) AS id FROM outbox WHERE kind = ? GROUP BY emp, key"
            ") AS newest ON o.id = newest.id",
            (STATUS_KIND,),
        )
        out = []
        for r in rows:
            status = orjson.loads(r["payload"]).get("status")
            out.append((r["emp"], r["key"], str(status), r["state"]))
        return out

    async def outbox_item(self, item_id: int) -> OutboxItem | None:
        """One row, whatever its state (the CLI's `outbox show`)."""
        row = await self.db.one("SELECT * FROM outbox WHERE id = ?", (item_id,))
        return None if row is None else outbox_item(row)

    async def retry_pending_now(self, now: float) -> int:
        """Make every pending row that waits for a later attempt due now; how many."""

        def work(conn: Conn) -> int:
            cur = conn.execute(
                "UPDATE outbox SET next_at = ? WHERE state = 'pending' AND next_at > ?",
                (now, now),
            )
            return cur.rowcount

        return await self.db.run_write(work)

    async def requeue(self, ids: Sequence[int] | None, now: float) -> int:
        """Put dead (or given) rows back to pending, due now; None means every dead row."""

        def work(conn: Conn) -> int:
            if ids is None:
                return int(
                    conn.execute(
                        "UPDATE outbox SET state = 'pending', next_at = ?, attempts = 0, "
                        "done_at = NULL WHERE state = 'dead'",
                        (now,),
                    ).rowcount
                )
            total = 0
            for i in ids:
                total += conn.execute(
                    "UPDATE outbox SET state = 'pending', next_at = ?, attempts = 0, "
                    "done_at = NULL WHERE id = ? AND state != 'delivered'",
                    (now, i),
                ).rowcount
            return total

        return await self.db.run_write(work)

    async def purge(self, item_id: int) -> bool:

        def work(conn: Conn) -> bool:
            return bool(conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,)).rowcount > 0)

        return await self.db.run_write(work)

    async def prune_delivered(self, before: float) -> int:

        def work(conn: Conn) -> int:
            return int(
                conn.execute(
                    "DELETE FROM outbox WHERE state = 'delivered' AND done_at < ?", (before,)
                ).rowcount
            )

        return await self.db.run_write(work)

    async def outbox_stats(self, now: float) -> list[OutboxStat]:
        """Depth and oldest age (s) per EMP, kind and state, for /metrics and /healthz."""
        rows = await self.db.all(
            "SELECT emp, kind, state, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox "
            "WHERE state != 'delivered' GROUP BY emp, kind, state"
        )
        return [
            OutboxStat(
                r["emp"], r["kind"], OutboxState(r["state"]), r["n"], max(0.0, now - r["oldest"])
            )
            for r in rows
        ]
