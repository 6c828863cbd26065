"""Outbox claims under any interleaving of two nodes: Hypothesis draws a sequence of
enqueues (coalesced statuses and CDRs), claims, outcomes (some late, after the claim expired)
and clock steps, and runs it on two Stores over one database (a SQLite file, or the run's
PostgreSQL database).

What must hold whatever the sequence:
- a row is never handed to a node while another node holds an unexpired claim on it;
- a row is marked delivered at most once, and only by the node holding it at the time;
- an outcome changes its own row only (and not at all when it comes late);
- a status rewritten while in flight is never marked delivered with the older payload;
- at the end, draining with one node delivers everything left: nothing is stuck."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpo_gateway.bridge.ports import NewOutbox, OutboxState
from cpo_gateway.store import Store
from tests.conftest import examples
from tests.storage import make_database

LEASE = 10.0
EVSES = ("E1", "E2")
NODES = ("a", "b")


@dataclass(frozen=True)
class Enqueue:
    node: int
    kind: str  # "status" or "cdr"
    key: str
    value: int


@dataclass(frozen=True)
class Claim:
    node: int
    limit: int


@dataclass(frozen=True)
class Outcome:
    node: int
    pick: int  # which of the node's handed rows
    what: str  # delivered | retry | dead | postpone | release


@dataclass(frozen=True)
class Tick:
    seconds: float


steps = st.lists(
    st.one_of(
        st.builds(
            Enqueue,
            st.integers(0, 1),
            st.sampled_from(("status", "cdr")),
            st.sampled_from(EVSES),
            st.integers(0, 9),
        ),
        st.builds(Claim, st.integers(0, 1), st.integers(1, 3)),
        st.builds(
            Outcome,
            st.integers(0, 1),
            st.integers(0, 5),
            st.sampled_from(("delivered", "retry", "dead", "postpone", "release")),
        ),
        st.builds(Tick, st.sampled_from((0.5, 3.0, LEASE + 1))),
    ),
    max_size=30,
)


def _row(step: Enqueue) -> NewOutbox:
    if step.kind == "status":
        return NewOutbox("emsp", "evse-status", step.key, {"evse_id": step.key, "v": step.value})
    return NewOutbox("emsp", "cdr", step.key, {"session_id": step.key, "v": step.value})


async def _play(path: Path, plan: list[Enqueue | Claim | Outcome | Tick]) -> None:
    stores = []
    for name in NODES:
        db = make_database(path)  # the run's PostgreSQL database, when it is on one
        await db.open()
        stores.append(Store(db, node=name))
    await stores[0].db.write("DELETE FROM outbox", ())  # an example starts empty
    try:
        now = 1000.0
        held: dict[int, tuple[str, float]] = {}  # row id -> (node, claimed until)
        handed: list[list[tuple[int, dict[str, object]]]] = [[], []]
        delivered: set[int] = set()
        for step in plan:
            if isinstance(step, Tick):
                now += step.seconds
            elif isinstance(step, Enqueue):
                await stores[step.node].enqueue([_row(step)], now)
            elif isinstance(step, Claim):
                store = stores[step.node]
                for item in await store.due("emsp", now, step.limit, lease_s=LEASE):
                    holder = held.get(item.id)
                    assert holder is None or holder[0] == store.node or holder[1] <= now, (
                        f"row {item.id} handed to {store.node} while {holder} holds it"
                    )
                    held[item.id] = (store.node, now + LEASE)
                    handed[step.node].append((item.id, item.payload))
            elif handed[step.node]:
                store = stores[step.node]
                item_id, payload = handed[step.node].pop(step.pick % len(handed[step.node]))
                mine = held.get(item_id, ("", 0.0))[0] == store.node
                before = await store.outbox_item(item_id)
                assert before is not None
                others = [r for r in await store.list_outbox(None, 100) if r.id != item_id]
                if step.what == "delivered":
                    await store.mark_delivered([item_id], now)
                elif step.what == "retry":
                    await store.mark_retry(item_id, now + 1.0, "503")
                elif step.what == "dead":
                    await store.mark_dead(item_id, "400", now)
                elif step.what == "postpone":
                    await store.postpone(item_id, now + 1.0, "later")
                else:
                    await store.release(item_id)
                after = await store.outbox_item(item_id)
                assert after is not None
                now_others = [r for r in await store.list_outbox(None, 100) if r.id != item_id]
                assert now_others == others, f"a {step.what} of row {item_id} changed others"
                if not mine or before.claimed_by != store.node:
                    assert after == before, f"a late {step.what} changed row {item_id}"
                    continue
                held.pop(item_id, None)
                assert after.claimed_by is None
                if after.state is OutboxState.DELIVERED:
                    assert item_id not in delivered, f"row {item_id} delivered twice"
                    assert after.payload == payload, "delivered with a payload never sent"
                    delivered.add(item_id)
        # Nothing is stuck: once every claim has expired, one node drains what is pending.
        now += LEASE + 1
        for _ in range(50):  # bounded: at most 30 rows were queued
            items = await stores[0].due("emsp", now, 10, lease_s=LEASE)
            if not items:
                break
            await stores[0].mark_delivered([i.id for i in items], now)
        assert await stores[0].list_outbox("pending", 100) == []
    finally:
        for store in stores:
            await store.db.close()


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_any_interleaving_of_two_nodes_keeps_the_claims(
    plan: list[Enqueue | Claim | Outcome | Tick],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_play(Path(tmp) / "gateway.sqlite3", plan))
