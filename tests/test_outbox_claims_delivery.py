"""Delivery from several nodes over one database: each node's Deliverer with its own Store
(connections, group commit), the real EMP client and the sandbox EMP on a real socket, a
fake clock that only moves when the test (or the slow link below) moves it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.bridge.delivery import Deliverer
from cpo_gateway.bridge.model import Delivery
from cpo_gateway.bridge.ports import OutboxState
from cpo_gateway.oioi.client import EmpClients, Endpoint
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.store import Store
from tests.conftest import OUTBOUND_KEY
from tests.storage import make_database
from tests.test_outbox_delivery import HOUR, T0, CountingLink, FakeClock, cdr_row

CLAIM_S = 60.0


class SlowLink(CountingLink):
    """Each delivery takes `seconds` of the fake clock (a slow EMP, a long queue)."""

    def __init__(self, inner: EmpClients, clock: FakeClock, seconds: float) -> None:
        super().__init__(inner)
        self.clock = clock
        self.seconds = seconds

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        try:
            return await super().deliver(emp, kind, payload)
        finally:
            self.clock.now += self.seconds


@dataclass
class Cluster:
    path: Path
    emp: SandboxEmp
    clock: FakeClock
    clients: EmpClients

    async def node(self, name: str) -> Store:
        db = make_database(self.path)
        await db.open()
        store = Store(db, node=name)
        self.stores.append(store)
        return store

    def deliverer(
        self, store: Store, link: CountingLink | None = None, *, batch: int = 20, conc: int = 4
    ) -> Deliverer:
        return Deliverer(
            store,
            link or CountingLink(self.clients),
            station_of_evse=lambda evse_id: None,
            base_backoff_s=2.0,
            max_backoff_s=HOUR,
            retry_window_s=48 * HOUR,
            batch_size=batch,
            concurrency={"sandbox": conc},
            clock=self.clock,
            rand=lambda: 0.5,
            claim_s=CLAIM_S,
        )

    def __post_init__(self) -> None:
        self.stores: list[Store] = []


@pytest.fixture
async def cluster(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[Cluster]:
    clock = FakeClock()
    clients = EmpClients(
        [Endpoint("sandbox", emp.url, OUTBOUND_KEY, request_timeout_s=5.0)], clock=clock
    )
    await clients.start()
    made = Cluster(tmp_path / "gateway.sqlite3", emp, clock, clients)
    try:
        yield made
    finally:
        for store in made.stores:
            await store.db.close()
        await clients.close()


async def test_two_nodes_deliver_a_backlog_exactly_once(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    total = 150
    await a.enqueue([cdr_row(f"s-{i}") for i in range(total)], cluster.clock())
    da, db = cluster.deliverer(a), cluster.deliverer(b)
    sent = 0
    for _ in range(100):  # bounded: 150 rows, two nodes of 20 a tick
        got = await asyncio.gather(da.tick(), db.tick())
        sent += sum(got)
        if sum(got) == 0:
            break
    assert sent == total and min(da.delivered, db.delivered) > 0
    assert len(cluster.emp.calls("session-post")) == total, "a CDR was sent twice"
    assert cluster.emp.duplicates == 0 and len(cluster.emp.cdrs) == total
    assert await a.list_outbox(limit=total) == []


async def test_rows_of_a_dead_node_go_out_from_another_once_its_claim_expires(
    cluster: Cluster,
) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await a.enqueue([cdr_row(f"s-{i}") for i in range(5)], cluster.clock())
    # Node a claims them for its deliverer and dies before sending any.
    assert len(await a.due("sandbox", cluster.clock(), 10, lease_s=CLAIM_S)) == 5
    await a.db.close()
    survivor = cluster.deliverer(b)
    assert await survivor.tick() == 0, "a's claim still holds"
    cluster.clock.now = T0 + CLAIM_S
    assert await survivor.tick() == 5
    assert b.claims_expired == 5
    assert sorted(cluster.emp.cdrs) == [f"s-{i}" for i in range(5)]


async def test_a_row_whose_turn_comes_late_in_its_claim_is_given_back_unsent(
    cluster: Cluster,
) -> None:
    (a,) = [await cluster.node("a")]
    await a.enqueue([cdr_row(f"s-{i}") for i in range(5)], cluster.clock())
    slow = SlowLink(cluster.clients, cluster.clock, 20.0)
    d = cluster.deliverer(a, slow, batch=5, conc=1)
    # One at a time, 20 s each: the third's turn comes 40 s into a 60 s claim.
    assert await d.tick() == 2
    assert sorted(cluster.emp.cdrs) == ["s-0", "s-1"]
    rows = await a.list_outbox(limit=10)
    assert [r.key for r in rows] == ["s-2", "s-3", "s-4"]
    assert all(
        r.state is OutboxState.PENDING and r.attempts == 0 and r.claimed_by is None for r in rows
    )
    for _ in range(5):  # bounded: two a pass
        if not await d.tick():
            break
    assert sorted(cluster.emp.cdrs) == [f"s-{i}" for i in range(5)]
    assert len(cluster.emp.calls("session-post")) == 5
