"""Outbox claims across nodes: two (or more) Store objects over one database, each with its
own connections and group commit, as two gateway nodes would be. On SQLite they share one
file; with --backend=postgresql, one PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cpo_gateway.bridge.ports import NewOutbox, OutboxState
from cpo_gateway.store import Store
from tests.storage import make_database

T0 = 1_800_000_000.0
LEASE = 60.0
EVSE = "DE*8PS*E1*1"


def cdr(key: str, n: int = 0) -> NewOutbox:
    return NewOutbox("emsp", "cdr", key, {"session_id": key, "n": n})


def status(value: str) -> NewOutbox:
    return NewOutbox("emsp", "evse-status", EVSE, {"evse_id": EVSE, "status": value})


class Nodes:
    """`await nodes("a", "b", ...)`: one Store per node name, all over the test's database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened: list[Store] = []

    async def __call__(self, *names: str) -> list[Store]:
        stores = []
        for name in names:
            db = make_database(self.path)
            await db.open()
            stores.append(Store(db, node=name))
            self.opened.append(stores[-1])
        return stores

    async def close(self) -> None:
        for store in self.opened:
            await store.db.close()


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    made = Nodes(tmp_path / "gateway.sqlite3")
    try:
        yield made
    finally:
        await made.close()


async def test_concurrent_claims_hand_every_row_out_once(nodes: Nodes) -> None:
    stores = await nodes("a", "b", "c", "d")
    total = 600
    await stores[0].enqueue([cdr(f"s{i}") for i in range(total)], T0)
    handed: Counter[int] = Counter()
    by_node: Counter[str] = Counter()

    async def worker(store: Store) -> int:
        items = await store.due("emsp", T0, 7, lease_s=LEASE)
        for item in items:
            handed[item.id] += 1
            by_node[store.node] += 1
            assert item.claimed_by == store.node
        if items:
            await store.mark_delivered([i.id for i in items], T0)
        return len(items)

    for _ in range(400):  # bounded: 600 rows, 4 nodes x 3 callers x 7 rows a round
        got = await asyncio.gather(*(worker(s) for s in stores for _ in range(3)))
        if sum(got) == 0 and len(handed) == total:
            break
    assert [i for i, n in handed.items() if n > 1] == [], "a row was handed out twice"
    assert len(handed) == total
    assert len(by_node) > 1, f"one node took everything: {by_node}"
    left = await stores[1].list_outbox(limit=total)
    assert left == [], f"{len(left)} row(s) not delivered"
    assert sum(s.claims_expired for s in stores) == 0


async def test_an_expired_claim_is_taken_over_and_the_late_outcome_changes_nothing(
    nodes: Nodes,
) -> None:
    a, b = await nodes("a", "b")
    await a.enqueue([cdr("s1")], T0)
    (mine,) = await a.due("emsp", T0, 10, lease_s=LEASE)
    assert (mine.claimed_by, mine.claimed_until) == ("a", T0 + LEASE)
    assert await b.due("emsp", T0 + LEASE - 1, 10, lease_s=LEASE) == []
    assert await a.next_due_at("emsp") == T0 + LEASE, "not due for anyone before the claim ends"

    # Node a stalls (or died) past its claim: node b takes the row over.
    (taken,) = await b.due("emsp", T0 + LEASE + 1, 10, lease_s=LEASE)
    assert taken.id == mine.id and taken.claimed_by == "b" and taken.taken_from == "a"
    assert (a.claims_expired, b.claims_expired) == (0, 1)

    # Whatever a says now is too late: the row is b's.
    await a.mark_delivered([mine.id], T0 + LEASE + 2)
    await a.mark_retry(mine.id, T0 + 9999, "late retry")
    await a.mark_dead(mine.id, "late dead", T0 + LEASE + 2)
    await a.postpone(mine.id, T0 + 9999, "late postpone")
    await a.release(mine.id)
    row = await b.outbox_item(mine.id)
    assert row is not None
    assert (row.state, row.attempts, row.last_error) == (OutboxState.PENDING, 0, None)
    assert (row.claimed_by, row.claimed_until) == ("b", T0 + 2 * LEASE + 1)

    await b.mark_delivered([taken.id], T0 + LEASE + 3)
    row = await a.outbox_item(mine.id)
    assert row is not None and row.state is OutboxState.DELIVERED and row.attempts == 1
    assert row.claimed_by is None and row.claimed_until is None


async def test_outcomes_clear_the_claim(nodes: Nodes) -> None:
    (a,) = await nodes("a")
    await a.enqueue([cdr("retry"), cdr("dead"), cdr("later"), cdr("back")], T0)
    items = {i.key: i for i in await a.due("emsp", T0, 10, lease_s=LEASE)}
    await a.mark_retry(items["retry"].id, T0 + 30, "HTTP 503")
    await a.mark_dead(items["dead"].id, "HTTP 400", T0)
    await a.postpone(items["later"].id, T0 + 5, "waiting for its station")
    await a.release(items["back"].id)
    rows = {r.key: r for r in await a.list_outbox(limit=10)}
    assert all(r.claimed_by is None and r.claimed_until is None for r in rows.values())
    assert (rows["retry"].attempts, rows["retry"].next_at) == (1, T0 + 30)
    assert rows["dead"].state is OutboxState.DEAD
    assert (rows["later"].attempts, rows["later"].next_at) == (0, T0 + 5)
    # Given back unsent: due again at once, as it was.
    (again,) = await a.due("emsp", T0, 10, lease_s=LEASE)
    assert again.key == "back" and again.attempts == 0 and again.taken_from is None


async def test_a_status_rewritten_on_another_node_while_in_flight_stays_pending(
    nodes: Nodes,
) -> None:
    a, b = await nodes("a", "b")
    await a.enqueue([status("Occupied")], T0)
    (flying,) = await a.due("emsp", T0, 10, lease_s=LEASE)
    assert flying.payload["status"] == "Occupied"
    # The charger's next status reaches node b while a is sending "Occupied".
    await b.enqueue([status("Available")], T0 + 1)
    assert await b.due("emsp", T0 + 1, 10, lease_s=LEASE) == [], "a still holds the row"
    await a.mark_delivered([flying.id], T0 + 2)
    (row,) = await b.list_outbox(limit=10)
    assert row.id == flying.id and row.state is OutboxState.PENDING
    assert row.payload["status"] == "Available" and row.next_at == T0 + 2
    assert row.claimed_by is None
    # Whichever node claims it next sends the newest status, once.
    (newest,) = await b.due("emsp", T0 + 2, 10, lease_s=LEASE)
    assert newest.payload["status"] == "Available"
    await b.mark_delivered([newest.id], T0 + 3)
    done = await a.outbox_item(newest.id)
    assert done is not None and done.state is OutboxState.DELIVERED


async def test_a_status_rewritten_while_a_failure_was_in_flight_gets_its_own_try(
    nodes: Nodes,
) -> None:
    a, b = await nodes("a", "b")
    await a.enqueue([status("Occupied")], T0)
    (flying,) = await a.due("emsp", T0, 10, lease_s=LEASE)
    await b.enqueue([status("Faulted")], T0 + 1)
    await a.mark_dead(flying.id, "HTTP 400 for Occupied", T0 + 2)
    (row,) = await b.list_outbox(limit=10)
    assert row.state is OutboxState.PENDING and row.payload["status"] == "Faulted"
    (retried,) = await b.due("emsp", T0 + 2, 10, lease_s=LEASE)
    assert retried.id == flying.id


async def test_a_sessions_rows_stay_in_order_across_nodes(nodes: Nodes) -> None:
    a, b = await nodes("a", "b")
    await a.enqueue([cdr("s1", 1), cdr("s1", 2), cdr("s2", 1)], T0)
    first = await a.due("emsp", T0, 1, lease_s=LEASE)
    assert [(i.key, i.payload["n"]) for i in first] == [("s1", 1)]
    # The second CDR of s1 waits while the first is in flight on a; s2 is free.
    other = await b.due("emsp", T0, 10, lease_s=LEASE)
    assert [(i.key, i.payload["n"]) for i in other] == [("s2", 1)]
    await a.mark_retry(first[0].id, T0 + 10, "HTTP 503")
    assert await b.due("emsp", T0 + 5, 10, lease_s=LEASE) == [], "s1's first row is pending"
    (again,) = await b.due("emsp", T0 + 10, 10, lease_s=LEASE)
    assert (again.key, again.payload["n"]) == ("s1", 1)
    await b.mark_delivered([again.id], T0 + 11)
    (second,) = await a.due("emsp", T0 + 11, 10, lease_s=LEASE)
    assert (second.key, second.payload["n"]) == ("s1", 2)


async def test_a_restarted_node_drops_its_old_claims_and_no_one_elses(
    nodes: Nodes,
) -> None:
    a, b = await nodes("a", "b")
    await a.enqueue([cdr("s1"), cdr("s2")], T0)
    (of_a,) = await a.due("emsp", T0, 1, lease_s=LEASE)
    (of_b,) = await b.due("emsp", T0, 1, lease_s=LEASE)
    (restarted,) = await nodes("a")
    assert await restarted.release_claims() == 1
    (due,) = await b.due("emsp", T0 + 1, 10, lease_s=LEASE)
    assert due.id == of_a.id and due.taken_from is None, "released, not expired"
    held = await a.outbox_item(of_b.id)
    assert held is not None and held.claimed_by == "b"
