"""Transactions (the chargers') and sessions (the EMPs'), kept together so one commit
covers both."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace

from cpo_gateway.bridge.model import EnergySample, TransactionStart, TransactionStop
from cpo_gateway.bridge.ports import (
    NewOutbox,
    Recorded,
    SessionOrigin,
    SessionRecord,
    SessionState,
    TxRecord,
)
from cpo_gateway.bridge.storage import OutboxBuilder, StopOutbox
from cpo_gateway.store.db import Database
from cpo_gateway.store.outbox import insert_outbox_sync, settle_outbox_sync
from cpo_gateway.store.signed import (
    SIGNED_SQL,
    record_signed_sync,
    signed_from_column,
    signed_params,
)
from cpo_gateway.store.sql import Conn, Row


def start_key(start: TransactionStart) -> str:
    """What makes two starts the same one, whatever their message ids: for a transaction the
    charger named, its name alone."""
    if start.charger_key is not None:
        return f"{start.charge_point_id}|key|{start.charger_key}"
    return (
        f"{start.charge_point_id}|{start.connector_id}|{start.id_tag}|"
        f"{start.timestamp}|{start.meter_start_wh}"
    )


def stop_key(stop: TransactionStop) -> str:
    if stop.charger_key is not None:
        return f"{stop.charge_point_id}|key|{stop.charger_key}"
    return f"{stop.charge_point_id}|{stop.transaction_id}|{stop.timestamp}|{stop.meter_stop_wh}"


def _tx(row: Row) -> TxRecord:
    return TxRecord(
        id=row["id"],
        session_id=row["session_id"],
        charge_point=row["charge_point"],
        connector=row["connector"],
        id_tag=row["id_tag"],
        started_at=row["started_at"],
        meter_start_wh=row["meter_start_wh"],
        stopped_at=row["stopped_at"],
        meter_stop_wh=row["meter_stop_wh"],
        first_wh=row["first_wh"],
        first_wh_at=row["first_wh_at"],
        last_wh=row["last_wh"],
        last_wh_at=row["last_wh_at"],
        charge_start_at=row["charge_start_at"],
        charge_stop_at=row["charge_stop_at"],
        charger_key=row["charger_key"],
        signed_start=signed_from_column(row["signed_start"]),
        signed_end=signed_from_column(row["signed_end"]),
    )


def _session(row: Row) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        evse_id=row["evse_id"],
        charge_point=row["charge_point"],
        connector=row["connector"],
        emp=row["emp"],
        origin=SessionOrigin(row["origin"]),
        user_kind=row["user_kind"],
        user_id=row["user_id"],
        id_tag=row["id_tag"],
        auth_status=row["auth_status"],
        auth_path=row["auth_path"],
        state=SessionState(row["state"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        transaction_id=row["transaction_id"],
        detail=row["detail"],
    )


def _one_sync(conn: Conn, sql: str, params: Sequence[object]) -> Row | None:
    row: Row | None = conn.execute(sql, params).fetchone()
    return row


def _merge_samples(
    tx: Row | dict[str, object], samples: Sequence[EnergySample]
) -> dict[str, object]:
    """Fold energy readings into what a CDR needs: first/last register reading and the
    first/last moments the register increased. Samples may arrive out of order."""
    first_wh, first_at = tx["first_wh"], tx["first_wh_at"]
    last_wh, last_at = tx["last_wh"], tx["last_wh_at"]
    c_start, c_stop = tx["charge_start_at"], tx["charge_stop_at"]
    for s in samples:
        if first_at is None or s.timestamp < str(first_at):
            first_wh, first_at = s.wh, s.timestamp
        if last_at is None or s.timestamp >= str(last_at):
            if isinstance(last_wh, int | float) and s.wh > last_wh:
                c_start = c_start or last_at
                c_stop = s.timestamp
            last_wh, last_at = s.wh, s.timestamp
    return {
        "first_wh": first_wh,
        "first_wh_at": first_at,
        "last_wh": last_wh,
        "last_wh_at": last_at,
        "charge_start_at": c_start,
        "charge_stop_at": c_stop,
    }


_METER_SQL = """
UPDATE transactions SET
    first_wh = CASE WHEN (first_wh_at IS NULL OR :ts < first_wh_at) THEN :wh ELSE first_wh END,
    first_wh_at = CASE WHEN (first_wh_at IS NULL OR :ts < first_wh_at) THEN :ts ELSE first_wh_at END,
    charge_start_at = CASE WHEN ((last_wh_at IS NULL OR :ts >= last_wh_at) AND last_wh IS NOT NULL AND :wh > last_wh)
        THEN COALESCE(charge_start_at, last_wh_at) ELSE charge_start_at END,
    charge_stop_at = CASE WHEN ((last_wh_at IS NULL OR :ts >= last_wh_at) AND last_wh IS NOT NULL AND :wh > last_wh)
        THEN :ts ELSE charge_stop_at END,
    last_wh = CASE WHEN (last_wh_at IS NULL OR :ts >= last_wh_at) THEN :wh ELSE last_wh END,
    last_wh_at = CASE WHEN (last_wh_at IS NULL OR :ts >= last_wh_at) THEN :ts ELSE last_wh_at END
WHERE id = :tx AND charge_point = :cp
"""


def _meter_with_outbox(
    conn: Conn,
    *,
    charge_point: str,
    transaction_id: int,
    samples: Sequence[EnergySample],
    outbox: OutboxBuilder,
    now: float,
) -> None:
    for s in sorted(samples, key=lambda x: x.timestamp):
        params = {"tx": transaction_id, "cp": charge_point, "ts": s.timestamp, "wh": s.wh}
        conn.execute(_METER_SQL, params)
    record_signed_sync(conn, transaction_id, samples)
    trow = _one_sync(
        conn,
        "SELECT * FROM transactions WHERE id = ? AND charge_point = ?",
        (transaction_id, charge_point),
    )
    if trow is None:
        return
    srow = _one_sync(conn, "SELECT * FROM sessions WHERE id = ?", (trow["session_id"],))
    if srow is not None:
        insert_outbox_sync(conn, outbox(_tx(trow), _session(srow)), now)


class ChargingRepo:
    db: Database

    # --- reads -------------------------------------------------------------------------------
    async def find_start(self, start: TransactionStart) -> TxRecord | None:
        row = await self.db.one(
            "SELECT * FROM transactions WHERE start_key = ?", (start_key(start),)
        )
        return None if row is None else _tx(row)

    async def transaction(self, tx_id: int) -> TxRecord | None:
        row = await self.db.one("SELECT * FROM transactions WHERE id = ?", (tx_id,))
        return None if row is None else _tx(row)

    async def session(self, session_id: str) -> SessionRecord | None:
        row = await self.db.one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return None if row is None else _session(row)

    async def open_session_on(self, charge_point: str, connector: int) -> SessionRecord | None:
        """The pending or active session on an OCPP connector, newest first."""
        row = await self.db.one(
            "SELECT * FROM sessions WHERE charge_point = ? AND connector = ? "
            "AND state IN ('pending', 'active') ORDER BY created_at DESC LIMIT 1",
            (charge_point, connector),
        )
        return None if row is None else _session(row)

    async def open_transactions(self) -> list[tuple[TxRecord, SessionRecord]]:
        """Transactions not stopped whose session is active, with their sessions."""
        txs = await self.db.all("SELECT * FROM transactions WHERE stopped_at IS NULL")
        if not txs:
            return []
        rows = await self.db.all("SELECT * FROM sessions WHERE state = 'active'")
        sessions = {r["id"]: _session(r) for r in rows}
        return [(_tx(t), sessions[t["session_id"]]) for t in txs if t["session_id"] in sessions]

    async def pending_sessions(self) -> list[SessionRecord]:
        rows = await self.db.all("SELECT * FROM sessions WHERE state = 'pending'")
        return [_session(r) for r in rows]

    async def failed_remote_starts(self, now: float) -> list[SessionRecord]:
        """Remote starts that failed before their pending expiry had passed."""
        rows = await self.db.all(
            "SELECT * FROM sessions WHERE origin = 'remote' AND state = 'failed' "
            "AND expires_at > ?",
            (now,),
        )
        return [_session(r) for r in rows]

    async def list_sessions(self, limit: int = 50, state: str | None = None) -> list[SessionRecord]:
        if state:
            rows = await self.db.all(
                "SELECT * FROM sessions WHERE state = ? ORDER BY created_at DESC LIMIT ?",
                (state, limit),
            )
        else:
            rows = await self.db.all(
                "SELECT * FROM sessions ORDER BY created_at DESC LIMIT ?", (limit,)
            )
        return [_session(r) for r in rows]

    async def id_tag_for(self, evco_id: str, make: Callable[[str, int], str]) -> str:
        """A stable idTag per EVCO ID; `make(evco, attempt)` proposes one (collisions retried)."""
        row = await self.db.one("SELECT id_tag FROM id_tags WHERE evco_id = ?", (evco_id,))
        if row is not None:
            return str(row["id_tag"])

        def work(conn: Conn) -> str:
            for attempt in range(16):
                tag = make(evco_id, attempt)
                cur = conn.execute(
                    "INSERT INTO id_tags (evco_id, id_tag) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (evco_id, tag),
                )
                if cur.rowcount:
                    return tag
                existing = _one_sync(
                    conn, "SELECT id_tag FROM id_tags WHERE evco_id = ?", (evco_id,)
                )
                if existing is not None:
                    return str(existing["id_tag"])
            raise RuntimeError("no free idTag for EVCO ID after 16 attempts")

        return await self.db.run_write(work)

    # --- sessions ------------------------------------------------------------------------------
    async def claim_evse(
        self,
        s: SessionRecord,
        places: Sequence[tuple[str, int]],
        owed: Sequence[NewOutbox] = (),
        now: float = 0.0,
    ) -> int | None:
        """Store pending remote start `s` only if no session is open on its EVSE (by EVSE
        ID or on any of its `places`, (charge point, connector)); None when one is. `owed`:
        outbox rows written with the claim (nothing of them when it fails).

        Returns the start's remote ref: a positive number unique among the sessions (the
        row's rowid, never reused while the row lives), stored with it in the same
        transaction, by which the charger may name the start when it begins it.

        The check and the insert are one transaction on the database thread, so two starts
        for one EVSE cannot both pass; the unique index `sessions_one_remote_claim` holds
        the same rule for any writer that skips this."""

        def work(conn: Conn) -> int | None:
            held = conn.execute(
                "SELECT 1 FROM sessions WHERE state IN ('pending', 'active') AND evse_id = ?",
                (s.evse_id,),
            ).fetchone()
            for charge_point, connector in places:
                if held is not None:
                    break
                held = conn.execute(
                    "SELECT 1 FROM sessions WHERE charge_point = ? AND connector = ? "
                    "AND state IN ('pending', 'active')",
                    (charge_point, connector),
                ).fetchone()
            if held is not None:
                return None
            # A conflict (a remote start that did not come through here holds the EVSE) is
            # no row; the transaction goes on either way (ON CONFLICT, not an error).
            inserted = conn.execute(
                "INSERT INTO sessions (id, evse_id, charge_point, connector, emp, origin, "
                "user_kind, user_id, id_tag, auth_status, auth_path, state, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING rowid",
                (
                    s.id,
                    s.evse_id,
                    s.charge_point,
                    s.connector,
                    s.emp,
                    s.origin,
                    s.user_kind,
                    s.user_id,
                    s.id_tag,
                    s.auth_status,
                    s.auth_path,
                    s.state,
                    s.created_at,
                    s.expires_at,
                ),
            ).fetchone()
            if inserted is None:
                return None
            ref = int(inserted[0])
            assert ref > 0
            conn.execute("UPDATE sessions SET remote_ref = ? WHERE id = ?", (ref, s.id))
            insert_outbox_sync(conn, owed, now)
            return ref

        return await self.db.run_write(work)

    async def remote_start_tag(self, charge_point: str, remote_ref: int) -> str | None:
        """The idTag of the remote start sent to `charge_point` under `remote_ref`, whatever
        became of it since (pending, begun, failed)."""
        row = await self.db.one(
            "SELECT id_tag FROM sessions WHERE charge_point = ? AND remote_ref = ?",
            (charge_point, remote_ref),
        )
        return None if row is None else row["id_tag"]

    async def set_session_state(
        self,
        session_id: str,
        state: SessionState,
        detail: str = "",
        *,
        only_from: SessionState | None = None,
        settles: Sequence[NewOutbox] = (),
    ) -> bool:
        """`settles`: rows owed for later rewritten in the same commit (settle_outbox_sync),
        only when the state changed."""

        def work(conn: Conn) -> bool:
            if only_from:
                cur = conn.execute(
                    "UPDATE sessions SET state = ?, detail = ? WHERE id = ? AND state = ?",
                    (state, detail, session_id, only_from),
                )
            else:
                cur = conn.execute(
                    "UPDATE sessions SET state = ?, detail = ? WHERE id = ?",
                    (state, detail, session_id),
                )
            if cur.rowcount > 0:
                settle_outbox_sync(conn, settles)
            return cur.rowcount > 0

        return await self.db.run_write(work)

    # --- transactions --------------------------------------------------------------------------
    async def record_start(
        self,
        start: TransactionStart,
        *,
        bind_pending: bool,
        new_session: SessionRecord,
        outbox: OutboxBuilder,
        now: float,
        late_session: SessionRecord | None = None,
    ) -> Recorded:
        """Store a StartTransaction; returns the transaction, its session and whether it was a duplicate.

        With bind_pending, a pending remote start on the connector with the same idTag
        becomes the transaction's session; otherwise `new_session` is stored, or
        `late_session` when that remote start has failed already and its pending time has not
        run out (the charger began it late: decided in this transaction, whichever of the
        failure and the start was written first).
        """
        key = start_key(start)

        def work(conn: Conn) -> Recorded:
            row = _one_sync(conn, "SELECT * FROM transactions WHERE start_key = ?", (key,))
            if row is None and start.charger_key is not None:
                # Its end came first (reports out of order): the transaction exists already.
                row = _one_sync(
                    conn,
                    "SELECT * FROM transactions WHERE charge_point = ? AND charger_key = ?",
                    (start.charge_point_id, start.charger_key),
                )
            if row is not None:
                srow = _one_sync(conn, "SELECT * FROM sessions WHERE id = ?", (row["session_id"],))
                assert srow is not None
                return Recorded(_tx(row), _session(srow), True)
            pending = (
                _one_sync(
                    conn,
                    "SELECT id, state, id_tag FROM sessions WHERE charge_point = ? "
                    "AND connector = ? AND state IN ('pending', 'active') "
                    "ORDER BY created_at DESC LIMIT 1",
                    (start.charge_point_id, start.connector_id),
                )
                if bind_pending
                else None
            )
            if pending is not None and (pending["state"], pending["id_tag"]) == (
                "pending",
                start.id_tag,
            ):
                session_id = pending["id"]
            else:
                failed = (
                    _one_sync(
                        conn,
                        "SELECT id FROM sessions WHERE origin = 'remote' AND state = 'failed' "
                        "AND expires_at > ? AND charge_point = ? AND connector = ? AND id_tag = ? "
                        "LIMIT 1",
                        (now, start.charge_point_id, start.connector_id, start.id_tag),
                    )
                    if bind_pending and late_session is not None
                    else None
                )
                s = late_session if failed is not None and late_session else new_session
                conn.execute(
                    "INSERT INTO sessions (id, evse_id, charge_point, connector, emp, origin, "
                    "user_kind, user_id, id_tag, auth_status, auth_path, state, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)",
                    (
                        s.id,
                        s.evse_id,
                        s.charge_point,
                        s.connector,
                        s.emp,
                        s.origin,
                        s.user_kind,
                        s.user_id,
                        s.id_tag,
                        s.auth_status,
                        s.auth_path,
                        s.created_at,
                    ),
                )
                session_id = s.id
            # No reading with the start: the first reading to come takes its place.
            read_at = None if start.meter_start_wh is None else start.timestamp
            inserted = conn.execute(
                "INSERT INTO transactions (charge_point, connector, id_tag, start_key, started_at, "
                "meter_start_wh, first_wh, first_wh_at, last_wh, last_wh_at, session_id, "
                "charger_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    start.charge_point_id,
                    start.connector_id,
                    start.id_tag,
                    key,
                    start.timestamp,
                    start.meter_start_wh,
                    start.meter_start_wh,
                    read_at,
                    start.meter_start_wh,
                    read_at,
                    session_id,
                    start.charger_key,
                ),
            ).fetchone()
            tx_id = int(inserted[0])
            conn.execute(
                "UPDATE sessions SET transaction_id = ?, state = 'active' WHERE id = ?",
                (tx_id, session_id),
            )
            trow = _one_sync(conn, "SELECT * FROM transactions WHERE id = ?", (tx_id,))
            srow = _one_sync(conn, "SELECT * FROM sessions WHERE id = ?", (session_id,))
            assert trow is not None and srow is not None
            tx, session = _tx(trow), _session(srow)
            insert_outbox_sync(conn, outbox(tx, session), now)
            return Recorded(tx, session, False)

        # One hop to the database thread for the whole transaction.
        return await self.db.run_write(work)

    async def record_meter(
        self,
        charge_point: str,
        transaction_id: int,
        samples: Sequence[EnergySample],
        *,
        outbox: OutboxBuilder | None = None,
        now: float = 0.0,
    ) -> None:
        """Fold readings into a transaction (open or closed; unknown ids change nothing).

        One statement per sample, in time order, so it can share a group commit: SQLite
        evaluates every SET expression against the row as it was, which is what
        _merge_samples does in Python for the stop. With `outbox`, the rows it builds from
        the transaction as updated are queued in the same commit as the readings.
        """
        if outbox is not None:
            await self.db.run_write(
                functools.partial(
                    _meter_with_outbox,
                    charge_point=charge_point,
                    transaction_id=transaction_id,
                    samples=samples,
                    outbox=outbox,
                    now=now,
                )
            )
            return
        for s in sorted(samples, key=lambda x: x.timestamp):
            await self.db.write(
                _METER_SQL,
                {"tx": transaction_id, "cp": charge_point, "ts": s.timestamp, "wh": s.wh},
            )
        for params in signed_params(transaction_id, samples):
            await self.db.write(SIGNED_SQL, params)

    async def record_stop(
        self,
        stop: TransactionStop,
        *,
        orphan_session: Callable[[], SessionRecord | None],
        outbox: StopOutbox,
        now: float,
        session_detail: str | None = None,
    ) -> Recorded | None:
        """Store a StopTransaction; returns the transaction, its session and whether it was a duplicate.

        A stop for a transaction we never saw (unknown, -1, 0) becomes an orphan transaction
        with its own session, so it still reaches a CDR; if `orphan_session` gives none
        (it needs a decision made outside), nothing is stored and None is returned. A stop of
        an already stopped transaction changes nothing. When `outbox` holds the CDR, the
        session is left as needs_review with the reason, in the same commit, and no row is
        queued.
        """
        key = stop_key(stop)

        def work(conn: Conn) -> Recorded | None:
            if stop.charger_key is not None:
                row = _one_sync(
                    conn,
                    "SELECT * FROM transactions WHERE charge_point = ? AND charger_key = ?",
                    (stop.charge_point_id, stop.charger_key),
                )
            else:
                row = _one_sync(
                    conn,
                    "SELECT * FROM transactions WHERE stop_key = ? OR (id = ? AND charge_point = ?) "
                    "ORDER BY stop_key IS NULL LIMIT 1",
                    (key, stop.transaction_id, stop.charge_point_id),
                )
            if row is not None and row["stopped_at"] is not None:
                srow = _one_sync(conn, "SELECT * FROM sessions WHERE id = ?", (row["session_id"],))
                assert srow is not None
                return Recorded(_tx(row), _session(srow), True)
            if row is None:
                s = orphan_session()
                if s is None:
                    return None
                conn.execute(
                    "INSERT INTO sessions (id, evse_id, charge_point, connector, emp, origin, "
                    "user_kind, user_id, id_tag, auth_status, auth_path, state, created_at) "
                    "VALUES (?, ?, ?, ?, ?, 'orphan', ?, ?, ?, ?, ?, 'active', ?)",
                    (
                        s.id,
                        s.evse_id,
                        s.charge_point,
                        s.connector,
                        s.emp,
                        s.user_kind,
                        s.user_id,
                        s.id_tag,
                        s.auth_status,
                        s.auth_path,
                        s.created_at,
                    ),
                )
                inserted = conn.execute(
                    "INSERT INTO transactions (charge_point, connector, id_tag, reported_id, "
                    "session_id, charger_key) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        stop.charge_point_id,
                        s.connector,
                        stop.id_tag,
                        None if stop.charger_key else stop.transaction_id,
                        s.id,
                        stop.charger_key,
                    ),
                ).fetchone()
                orphan_tx = int(inserted[0])
                conn.execute(
                    "UPDATE sessions SET transaction_id = ? WHERE id = ?", (orphan_tx, s.id)
                )
                row = _one_sync(conn, "SELECT * FROM transactions WHERE id = ?", (orphan_tx,))
                assert row is not None
            final = (
                ()
                if stop.meter_stop_wh is None
                else (EnergySample(stop.timestamp, float(stop.meter_stop_wh)),)
            )
            merged = _merge_samples(dict(row), [*stop.samples, *final])
            conn.execute(
                "UPDATE transactions SET stop_key = ?, stopped_at = ?, meter_stop_wh = ?, "
                "stop_reason = ?, first_wh = ?, first_wh_at = ?, last_wh = ?, last_wh_at = ?, "
                "charge_start_at = ?, charge_stop_at = ? WHERE id = ?",
                (key, stop.timestamp, stop.meter_stop_wh, stop.reason, *merged.values(), row["id"]),
            )
            record_signed_sync(conn, row["id"], stop.samples)
            conn.execute(
                "UPDATE sessions SET state = 'finished', detail = COALESCE(?, detail) WHERE id = ?",
                (session_detail, row["session_id"]),
            )
            trow = _one_sync(conn, "SELECT * FROM transactions WHERE id = ?", (row["id"],))
            srow = _one_sync(conn, "SELECT * FROM sessions WHERE id = ?", (row["session_id"],))
            assert trow is not None and srow is not None
            tx, session = _tx(trow), _session(srow)
            out = outbox(tx, session)
            if out.hold is not None:
                # A session closed with a reason (a ghost, an operator) keeps it beside the hold.
                detail = out.hold if not session_detail else f"{out.hold} ({session_detail})"
                conn.execute(
                    "UPDATE sessions SET state = 'needs_review', detail = ? WHERE id = ?",
                    (detail, session.id),
                )
                session = replace(session, state=SessionState.NEEDS_REVIEW, detail=detail)
            insert_outbox_sync(conn, out.rows, now)
            return Recorded(tx, session, False)

        return await self.db.run_write(work)

    # --- review (CDRs held as implausible) -----------------------------------------------------
    async def count_needing_review(self) -> int:
        # COUNT(created_at) (never NULL): the partial index sessions_review answers it, where
        # COUNT(*) has the planner scan all of sessions_evse instead.
        value = await self.db.scalar(
            "SELECT COUNT(created_at) FROM sessions WHERE state = 'needs_review'"
        )
        return int(value or 0)

    async def release_reviewed(
        self, session_id: str, rows: Sequence[NewOutbox], detail: str, now: float
    ) -> bool:
        """Queue a held session's CDR and mark it finished, in one commit; False when the
        session is not (or no longer) held."""

        def work(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE sessions SET state = 'finished', detail = ? "
                "WHERE id = ? AND state = 'needs_review'",
                (detail, session_id),
            )
            if cur.rowcount == 0:
                return False
            insert_outbox_sync(conn, rows, now)
            return True

        return await self.db.run_write(work)
