"""Two gateway nodes in this process sharing one PostgreSQL database: commands, presence,
leases and the admin channel travel between them (real PostgreSQL, real websockets, real
OIOI requests, real admin socket)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.model import AuthStatus, CommandStatus
from cpo_gateway.cluster import ClusterNode
from cpo_gateway.cluster.bus import Bus
from cpo_gateway.config import load_config
from cpo_gateway.config_storage import STORAGE_URL_ENV
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.tasks import TaskSet
from tests.conftest import (
    INBOUND_KEY,
    OUTBOUND_KEY,
    PARTNER,
    Harness,
    running_gateway,
    write_config,
)
from tests.test_csms_support import eventually

CP = "CP-BER-001"
EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"


@pytest.fixture
def cluster_url(pg_url: str) -> str:
    """The database every node of the test stores in (the nodes create its tables)."""
    return pg_url


def _node_config(
    tmp_path: Path, name: str, emp: SandboxEmp, pg_url: str, emps: str | None = None
) -> Any:
    directory = tmp_path / name
    directory.mkdir()
    path = write_config(directory, emp_url=emp.url, emps=emps)
    cfg = load_config(path, {STORAGE_URL_ENV: pg_url})
    assert cfg.cluster.enabled  # the storage is PostgreSQL
    cluster = dataclasses.replace(
        cfg.cluster, node_id=name, heartbeat_s=0.2, alive_s=3.0, lease_retry_s=0.2
    )
    return dataclasses.replace(cfg, cluster=cluster)


@contextlib.asynccontextmanager
async def nodes(
    tmp_path: Path, emp: SandboxEmp, pg_url: str, *names: str, emps: str | None = None
) -> AsyncIterator[list[Harness]]:
    async with contextlib.AsyncExitStack() as stack:
        harnesses = [
            await stack.enter_async_context(
                running_gateway(Gateway(_node_config(tmp_path, n, emp, pg_url, emps)), emp)
            )
            for n in names
        ]
        for h in harnesses:  # every node sees every other one alive
            await eventually(functools.partial(_sees, _cluster(h), len(names) - 1))
        yield harnesses


def _sees(node: ClusterNode, peers: int) -> bool:
    return len(node.presence.peers) == peers


def _cluster(h: Harness) -> ClusterNode:
    assert h.gateway.cluster is not None
    return h.gateway.cluster


async def _charger_at(h: Harness, cp_id: str = CP) -> SimCharger:
    cp = h.charger(cp_id)
    await cp.__aenter__()
    await cp.connect()
    await cp.status(1, "Available")
    await cp.status(2, "Available")
    return cp


async def _known_elsewhere(h: Harness, node: str, cp_id: str = CP) -> None:
    await eventually(lambda: _cluster(h).control.node_of(cp_id) == node)


async def test_a_remote_start_on_a_reaches_the_charger_on_b_and_its_answer_returns(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, b):
        cp = await _charger_at(b)
        try:
            await _known_elsewhere(a, "b")
            assert not a.gateway.csms.registry.is_connected(CP)
            async with a.client() as client:
                status, body = await client.session_start(EVSE, EVCO)
            assert status == 200 and body["result"]["code"] == 0, body
            session_id = body["session-start"]["session-id"]
            starts = [p for action, p in cp.received if action == "RemoteStartTransaction"]
            assert len(starts) == 1 and starts[0]["connectorId"] == 1, cp.received
            assert _cluster(a).calls.made == 1 and _cluster(b).calls.served == 1
            # b bound the charger's transaction to the session a stored, and a stops it.
            await eventually(lambda: cp.transaction_id(1) is not None)
            tx_id = cp.transaction_id(1)
            assert tx_id is not None
            await cp.meter_values(1, tx_id, 500)
            async with a.client() as client:
                status, body = await client.session_stop(EVSE, EVCO, session_id)
            assert status == 200 and body["result"]["code"] == 0, body
            await emp.wait_for(lambda: session_id in emp.cdrs, timeout=10)
        finally:
            await cp.close()
    cdr = emp.cdrs[session_id]
    assert cdr["user"] == {"identifier-type": "evco-id", "identifier": EVCO}
    assert cdr["energy-consumed"] > 0


async def test_a_charger_connected_nowhere_is_offline_as_on_one_node(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, _b):
        result = await _cluster(a).control.remote_start(CP, 1, "04A2B3C4")
        async with a.client() as client:
            status, body = await client.session_start(EVSE, EVCO)
    assert result.status is CommandStatus.OFFLINE
    assert _cluster(a).calls.made == 0
    assert status == 200 and body["result"]["code"] != 0, body


async def test_a_large_command_travels_in_a_message_row(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    """A local list of 600 cards is far over a NOTIFY's 8,000 bytes."""
    tags = [f"{i:08X}" for i in range(600)]
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, b):
        cp = await _charger_at(b)
        try:
            await _known_elsewhere(a, "b")
            entries = [(t, AuthStatus.ACCEPTED) for t in tags]
            result = await _cluster(a).control.send_local_list(CP, 7, entries)
            async with await psycopg.AsyncConnection.connect(cluster_url) as conn:
                cur = await conn.execute("SELECT count(*) FROM cluster_messages")
                row = await cur.fetchone()
        finally:
            await cp.close()
    assert result.status is CommandStatus.ACCEPTED, result
    assert sorted(cp.local_list) == tags  # in chunks, each a version of its own
    assert row is not None and row[0] >= 1


async def _admin(h: Harness, request: dict[str, object]) -> dict[str, Any]:
    path = h.gateway.config.gateway.state_dir / "admin.sock"
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()
        await writer.wait_closed()
    reply: dict[str, Any] = json.loads(line)
    return reply


async def test_an_ops_command_through_the_other_node(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, b):
        cp = await _charger_at(b)
        try:
            await _known_elsewhere(a, "b")
            reply = await _admin(
                a, {"charge_point": CP, "action": "Reset", "args": {"type": "Hard"}}
            )
            refused = await _admin(
                a, {"charge_point": CP, "action": "Reset", "args": {"type": "Soft", "x": 1}}
            )
        finally:
            await cp.close()
    assert reply["status"] == "accepted", reply
    assert [p for action, p in cp.received if action == "Reset"] == [{"type": "Hard"}]
    # The holding node judged the request: its error comes back as it would locally.
    assert refused["status"] == "error" and "unknown args x" in refused["detail"], refused


async def _charger_row(pg_url: str, cp_id: str = CP) -> tuple[str, int] | None:
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute(
            "SELECT node_id, epoch FROM charger_nodes WHERE charge_point_id = %s", (cp_id,)
        )
        row = await cur.fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


async def test_a_takeover_on_b_is_not_undone_by_the_late_disconnect_on_a(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, b):
        old = await _charger_at(a)
        await eventually(lambda: _cluster(b).control.node_of(CP) == "a")
        first = await _charger_row(cluster_url)
        new = await _charger_at(b)  # the charger reconnected through another node
        try:
            await eventually(lambda: _cluster(a).presence.takeovers_seen == 1)
            taken = await _charger_row(cluster_url)
            flushed = _cluster(a).presence.flushed
            await old.close()  # node a sees its (stale) socket close only now
            # a has written its disconnect (a delete of its own row, if it were still its).
            await eventually(lambda: _cluster(a).presence.flushed == flushed + 1)
            row = await _charger_row(cluster_url)
            after = _cluster(a).control.node_of(CP)
            reset = await _cluster(a).control.reset(CP, "Soft")
        finally:
            await new.close()
    assert first is not None and first[0] == "a"
    assert taken is not None and taken[0] == "b" and taken[1] != first[1]
    assert row == taken
    assert after == "b"
    assert reset.status is CommandStatus.ACCEPTED
    assert [action for action, _ in new.received].count("Reset") == 1


async def _lease_holders(hs: list[Harness], job: str) -> list[str]:
    return [_cluster(h).node_id for h in hs if _cluster(h).holds(job)]


async def test_killing_the_lease_holders_connection_moves_the_lease(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    job = "housekeeping"
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as hs:
        await eventually(lambda: len([h for h in hs if _cluster(h).holds(job)]) == 1)
        (first,) = await _lease_holders(hs, job)
        async with await psycopg.AsyncConnection.connect(cluster_url, autocommit=True) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"cpo-gateway {first} leases",),
            )
        holder = _cluster(next(h for h in hs if _cluster(h).node_id == first))
        await eventually(lambda: not holder.holds(job))
        await eventually(lambda: len([h for h in hs if _cluster(h).holds(job)]) == 1)
        (second,) = await _lease_holders(hs, job)
        # The other lease (the status resync) is held by exactly one node too.
        resync = await _lease_holders(hs, "status-resync")
        # The job runs where its lease is, and is left to that node everywhere else.
        by_id = {_cluster(h).node_id: h.gateway.jobs for h in hs}
        for jobs in by_id.values():
            await jobs.run_once(job)
    assert second != first
    assert len(resync) == 1
    assert by_id[second].runs.get(job) == 1 and by_id[second].skipped.get(job) is None
    assert by_id[first].runs.get(job) is None and by_id[first].skipped.get(job) == 1


async def test_the_bus_reconnects_and_presence_is_asserted_again(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    """PostgreSQL drops every connection of node b; its chargers stay reachable from a."""
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, b):
        cp = await _charger_at(b)
        try:
            await _known_elsewhere(a, "b")
            async with await psycopg.AsyncConnection.connect(cluster_url, autocommit=True) as conn:
                await conn.execute("DELETE FROM charger_nodes")  # as if b's rows were lost
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'cpo-gateway b %'"
                )
            await eventually(lambda: not _cluster(b).bus.up)
            await eventually(lambda: _cluster(b).bus.up)
            row = None
            for _ in range(100):
                row = await _charger_row(cluster_url)
                if row is not None:
                    break
                await asyncio.sleep(0.05)
            result = await _cluster(a).control.trigger_status(CP)
        finally:
            await cp.close()
    assert row is not None and row[0] == "b"
    assert result.status is CommandStatus.ACCEPTED


async def test_healthz_and_metrics_name_the_node_and_its_peers(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, _b):
        ok, health = await a.gateway.health()
        metrics = await a.gateway.metrics()
    assert ok, health
    assert health["node"] == "a"
    cluster = health["cluster"]
    assert isinstance(cluster, dict)
    assert cluster["node"] == "a" and cluster["db"] == "up" and cluster["peers"] == ["b"]
    assert cluster["chargers_elsewhere"] == 0
    assert 'cpo_gateway_node_info{node="a"} 1.0' in metrics
    assert "cpo_gateway_cluster_peers 1.0" in metrics


async def test_a_node_posts_no_status_for_chargers_another_node_holds(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    """Node a has never seen CP-BER-001: it must not tell the EMP its EVSEs are offline
    while node b holds the charger (b posts them)."""
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, b):
        cp = await _charger_at(b)
        try:
            await _known_elsewhere(a, "b")
            await emp.wait_for(lambda: emp.statuses.get(EVSE) == "Available", timeout=10)
            queued = await a.gateway.core.flush_statuses(force=True)  # a resync on a
            await a.gateway.core.deliver_all()
            statuses = dict(emp.statuses)
        finally:
            await cp.close()
    other = [e for e in statuses if not e.startswith("DE*CPO*E1001*")]
    assert statuses[EVSE] == "Available" and statuses["DE*CPO*E1001*2"] == "Available"
    assert queued == len(other)  # only the EVSEs of chargers connected nowhere


CARD = "04A2B3C4D5E6F7"
NO_ONLINE_CHECK = f"""
    [[emp]]
    name = "sandbox"
    url = "{{url}}"
    api_key = "{OUTBOUND_KEY}"
    inbound_api_key = "{INBOUND_KEY}"
    partner_identifier = "{PARTNER}"
    online_authorization = false
    offline_policy = "reject"
"""


async def test_a_local_authorize_on_b_after_an_rfid_post_on_a(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    """b has looked the card up (not listed: Invalid, remembered); the list a receives
    is what b answers from at once."""
    emps = NO_ONLINE_CHECK.replace("{url}", emp.url)
    async with nodes(tmp_path, emp, cluster_url, "a", "b", emps=emps) as (a, b):
        cp = await _charger_at(b)
        try:
            before = await cp.authorize(CARD)
            async with a.client() as client:
                status, body = await client.rfid_post(PARTNER, [CARD])
            assert status == 200, body
            await eventually(lambda: _cluster(b).authorization_changes_heard == 1)
            after = await cp.authorize(CARD)
            await eventually(lambda: CARD in cp.local_list)  # b pushed its charger the list
        finally:
            await cp.close()
    assert (before, after) == ("Invalid", "Accepted")


async def test_a_call_the_other_node_cannot_read_is_answered_with_the_field(
    tmp_path: Path, emp: SandboxEmp, cluster_url: str
) -> None:
    async with nodes(tmp_path, emp, cluster_url, "a", "b") as (a, b):
        unknown = await _cluster(a).calls.call("b", "control", {"m": "format_disk"}, 5.0)
        wrong = await _cluster(a).calls.call(
            "b", "control", {"m": "reset", "cp": CP, "a": [7]}, 5.0
        )
        served = _cluster(b).calls.served
    assert unknown is not None and unknown["status"] == "error"
    assert unknown["detail"].startswith("body.m: expected one of remote_start")
    assert wrong == {
        "status": "error",
        "detail": "body.a[0] of reset: expected a string, got 7",
        "data": {},
    }
    assert served == 2


async def test_a_busy_sender_still_beats(pg_url: str) -> None:
    """The heartbeat goes out between queued operations: a node whose queue never empties
    must not look dead to the others (it did, under the cluster-commands benchmark)."""
    beats_during: list[int] = []
    beats = 0

    async def beat(_conn: Any) -> None:
        nonlocal beats
        beats += 1

    async def nothing(_conn: Any) -> None:
        return None

    tasks = TaskSet("test")
    bus = Bus(
        pg_url,
        "busy",
        on_message=lambda _m: None,
        on_connect=nothing,
        every=beat,
        every_s=0.02,
        spawn=lambda coro, name: tasks.spawn(coro, name=name),
    )
    sender = tasks.spawn(bus.send_forever(), name="sender")

    async def slow(conn: Any) -> None:
        await conn.execute("SELECT pg_sleep(0.01)")
        beats_during.append(beats)

    try:
        await asyncio.gather(*(bus.run(slow) for _ in range(100)))  # queued all at once
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    # 100 operations of >= 10 ms each, heartbeat due every 20 ms: many beats in between.
    assert beats_during[-1] - beats_during[0] >= 10, beats_during
