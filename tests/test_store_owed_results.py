"""Rows owed for later (a command's result): written due at a deadline, rewritten by the
outcome while pending, never once sent; and written with the EVSE claim or not at all."""

from __future__ import annotations

from pathlib import Path

from cpo_gateway.bridge.ports import (
    NewOutbox,
    OutboxState,
    SessionOrigin,
    SessionRecord,
    SessionState,
)
from cpo_gateway.store import Store
from tests.storage import make_database

KIND = "command-result"


async def _store(tmp_path: Path) -> Store:
    db = make_database(tmp_path / "gateway.db")
    await db.open()
    return Store(db)


def _row(key: str, result: str, due: float | None) -> NewOutbox:
    return NewOutbox("emsp", KIND, key, {"reference": "http://x/r", "result": result}, due)


async def test_owed_later_settled_at_once_and_never_after_it_went(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        await store.owe([_row("a", "timeout", 100.0), _row("b", "timeout", 100.0)], now=10.0)
        assert await store.due("emsp", 50.0, 10) == []  # not before its deadline
        assert await store.settle([_row("a", "accepted", None)]) == 1
        (due,) = await store.due("emsp", 50.0, 10)  # settled: due at once
        assert (due.key, due.payload["result"]) == ("a", "accepted")
        await store.mark_delivered([due.id], 51.0)
        # Once sent, a late outcome changes nothing: the partner has had its one answer.
        assert await store.settle([_row("a", "failed", None)]) == 0
        (late,) = await store.due("emsp", 101.0, 10)  # b falls due with what it said
        assert (late.key, late.payload["result"]) == ("b", "timeout")
        rows = {r.key: r for r in await store.list_outbox(state="delivered", limit=10)}
        assert rows["a"].state is OutboxState.DELIVERED
        assert rows["a"].payload["result"] == "accepted"
    finally:
        await store.db.close()


def _session(sid: str) -> SessionRecord:
    return SessionRecord(
        id=sid,
        evse_id="DE*CPO*E1",
        charge_point="CP-1",
        connector=1,
        emp="emsp",
        origin=SessionOrigin.REMOTE,
        user_kind="rfid",
        user_id="04A2B3C4",
        id_tag="04A2B3C4",
        auth_status="Accepted",
        auth_path="remote",
        state=SessionState.PENDING,
        created_at="2026-01-01T00:00:00Z",
        expires_at=None,
        transaction_id=None,
    )


async def test_the_claim_writes_what_it_owes_only_when_it_wins(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        places = [("CP-1", 1)]
        won = await store.claim_evse(_session("s1"), places, [_row("w", "timeout", 99.0)], 1.0)
        lost = await store.claim_evse(_session("s2"), places, [_row("l", "timeout", 99.0)], 1.0)
        assert won is not None and lost is None
        assert [r.key for r in await store.list_outbox(limit=10)] == ["w"]
        # A failed start rewrites its row in the commit that fails the session.
        failed = await store.set_session_state(
            "s1",
            SessionState.FAILED,
            "refused",
            only_from=SessionState.PENDING,
            settles=[_row("w", "rejected", None)],
        )
        assert failed
        (row,) = await store.due("emsp", 2.0, 10)
        assert row.payload["result"] == "rejected"
        # A state change that loses (not pending any more) rewrites nothing.
        again = await store.set_session_state(
            "s1",
            SessionState.FAILED,
            "x",
            only_from=SessionState.PENDING,
            settles=[_row("w", "failed", None)],
        )
        assert not again
        still = await store.outbox_item(row.id)  # claimed by the due above: read it back
        assert still is not None and still.payload["result"] == "rejected"
    finally:
        await store.db.close()
