"""`scripts/bench --scenario cluster`: three gateway nodes (subprocesses) on one PostgreSQL,
behind one HAProxy rendered from config/haproxy.example.cfg for loopback ports.

(a) `n` chargers connect through HAProxy, each opens a transaction and heartbeats, while
`mixed_n` more chargers play the 1.6 mixed load for `mixed_s` seconds. (b) One node is killed
with SIGKILL: its chargers see their connections close, reconnect through HAProxy (after a
random delay within `spread_s`, without booting, as chargers do) and land on the two others.
At the end every charger stops its transaction; each one open at the kill is owed exactly one
CDR at the sandbox EMP. Printed: how many came back and when, CDRs delivered, lost and
delivered twice, and the outbox rows left.

The charger count is bounded by the open-files limit: HAProxy holds two sockets per charger
(client and node), so one HAProxy process serves at most about (limit - 2,500) / 2 chargers;
the nodes hold one each (a third of them, half after the kill) and the load processes split
theirs over --workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import psycopg

from cpo_gateway.bench.generator import LoadResult, LoadRun, LoadSpec
from cpo_gateway.bench.haproxy import Haproxy, Node, Timing
from cpo_gateway.bench.ocpp_scenarios import Context, prepare_gateway
from cpo_gateway.bench.pg_server import throwaway_postgres
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bench.servers import (
    OCPP_PATH,
    OIOI_PATH,
    OUTBOUND_KEY,
    ServerProcess,
    cards,
    charger_ids,
    evse_id,
)
from cpo_gateway.sim.emp.sandbox import SandboxEmp

NODES = 3
# HAProxy's own files, listeners and health checks beside two sockets per charger.
HAPROXY_RESERVE_FDS = 2_500
# Health checks every 0.5 s, down after 2 failures: a dead node is out within about 1 s.
TIMING = Timing(inter_ms=500, fall=2, rise=1)


def max_chargers(fds: int) -> int:
    """The chargers one HAProxy process can carry under an open-files limit of `fds`."""
    return max(10, (fds - HAPROXY_RESERVE_FDS) // 2)


def cluster_table(extra: str, node: str) -> str:
    return f'[cluster]\nnode_id = "{node}"\nheartbeat_s = 0.5\nalive_s = 3.0\n{extra}'


@dataclass
class Cluster:
    nodes: list[ServerProcess]
    proxy: Haproxy
    url: str  # the database's

    @property
    def chargers_port(self) -> int:
        return self.proxy.ports["chargers"]

    @property
    def oioi_url(self) -> str:
        return self.proxy.url("oioi", OIOI_PATH)

    def cpu_s(self) -> float:
        return sum(n.usage().cpu_s for n in self.nodes if n.running)

    async def placement(self) -> dict[str, int]:
        """How many chargers each node holds, as the cluster records it."""
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute(
                "SELECT node_id, count(*) FROM charger_nodes GROUP BY node_id ORDER BY node_id"
            )
            return {str(node): int(count) for node, count in await cur.fetchall()}

    async def outbox_left(self) -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute(
                "SELECT state, count(*) FROM outbox WHERE state <> 'delivered' GROUP BY state"
            )
            return {str(state): int(count) for state, count in await cur.fetchall()}


@contextlib.asynccontextmanager
async def running_cluster(
    ctx: Context, chargers: int, emp: SandboxEmp, connections: int
) -> AsyncIterator[Cluster]:
    """NODES gateway processes for `chargers` chargers on a throwaway PostgreSQL, HAProxy in
    front; stopped (the survivors with SIGTERM) and removed afterwards."""
    async with throwaway_postgres() as pg:
        url = await asyncio.to_thread(pg.create_database)
        nodes = [
            ServerProcess.gateway(
                ctx.directory(f"node{k}"),
                chargers,
                emp.url,
                storage_url=url,
                extra=cluster_table("", f"node{k}"),
            )
            for k in range(1, NODES + 1)
        ]
        members = [
            Node(f"node{k}", s.port, s.oioi_port, s.oioi_port) for k, s in enumerate(nodes, 1)
        ]
        proxy = Haproxy(members, ctx.directory("haproxy"), TIMING, connections=connections)
        try:
            for node in nodes:  # one at a time: the first applies the migrations
                await node.start(timeout_s=120)
            await asyncio.to_thread(proxy.start)
            yield Cluster(nodes, proxy, url)
        finally:
            await asyncio.to_thread(proxy.stop)
            for node in nodes:
                await node.stop()


def _errors(load: LoadResult) -> int:
    return sum(load.errors.values()) + sum(sum(r["failed"].values()) for r in load.ready)


def _ended(cdrs: Sequence[dict[str, object]], evses: set[str]) -> dict[str, int]:
    """CDRs with a stop time per EVSE of `evses` (each distinct session-id once)."""
    found: dict[str, int] = {}
    for cdr in cdrs:
        interval = cdr.get("session-interval")
        evse = str(cdr.get("connector-id"))
        if evse in evses and isinstance(interval, dict) and interval.get("stop"):
            found[evse] = found.get(evse, 0) + 1
    return found


async def cluster(
    ctx: Context,
    n: int = 1_000,
    *,
    fds: int,
    mixed_n: int = 20,
    mixed_s: float = 20.0,
    heartbeat_s: float = 10.0,
    spread_s: float = 5.0,
    recovery_s: float = 40.0,
) -> Table:
    total = mixed_n + n
    ids = charger_ids(total)
    whitelist = cards(max(1, min(total, 1000)))
    idle_evses = {evse_id(i) for i in range(mixed_n, total)}
    table = Table(
        f"cluster: {NODES} nodes behind HAProxy on one PostgreSQL, {n} chargers heartbeating "
        f"every {heartbeat_s:g} s in a transaction, {mixed_n} more in the mixed load",
        ("phase", "chargers", "calls", "calls/s", "p50 ms", "p99 ms", "max ms", "errors"),
    )
    async with (
        SandboxEmp(api_key=OUTBOUND_KEY) as emp,
        running_cluster(ctx, total, emp, total + 100) as c,
    ):
        await prepare_gateway(c.oioi_url, emp, total, whitelist)
        idle = LoadRun(
            LoadSpec("failover", "127.0.0.1", c.chargers_port, OCPP_PATH, ids[mixed_n:],
                     cards=whitelist, seconds=mixed_s + recovery_s, spread_s=spread_s,
                     heartbeat_s=heartbeat_s, start_transaction=True),
            ctx.workers, whitelist,
        )  # fmt: skip
        mixed = LoadRun(
            LoadSpec("mixed", "127.0.0.1", c.chargers_port, OCPP_PATH, ids[:mixed_n],
                     cards=whitelist, seconds=mixed_s),
            ctx.workers, whitelist,
        )  # fmt: skip
        try:
            connect_started = time.monotonic()
            await idle.start(timeout_s=600)
            connect_s = time.monotonic() - connect_started
            await mixed.start()
            cpu_before = c.cpu_s()
            start = time.time() + 0.5
            idle.go(start, start + mixed_s + recovery_s)
            mixed.go(start, start + mixed_s)
            mixed_result = await mixed.finish()
            cpu_mixed = c.cpu_s() - cpu_before
            await asyncio.sleep(max(0.0, start + mixed_s + 1.0 - time.time()))
            placed = await c.placement()  # the heartbeating chargers only: the mixed ones left
            victim = max(range(NODES), key=lambda k: placed.get(f"node{k + 1}", 0))
            killed_at = time.time()
            await c.nodes[victim].kill()
            # The reconnects are over well before the window ends: where did they land?
            await asyncio.sleep(max(0.0, min(recovery_s - 2.0, spread_s + 10.0)))
            placed_after = await c.placement()
            idle_result = await idle.finish(timeout_s=recovery_s + 300)
        finally:
            idle.kill()
            mixed.kill()
        ended = _ended(list(emp.cdrs.values()), idle_evses)

        def all_ended() -> bool:
            nonlocal ended
            ended = _ended(list(emp.cdrs.values()), idle_evses)
            return len(ended) >= idle_result.stopped

        with contextlib.suppress(TimeoutError):  # the table says what is missing
            await emp.wait_for(all_ended, timeout=120)
        outbox = await c.outbox_left()
    beats = idle_result.latencies.get("Heartbeat", [])
    window = mixed_s + recovery_s
    table.add("heartbeats", n, len(beats), num(len(beats) / window),
              ms(percentile(beats, 50)), ms(percentile(beats, 99)),
              ms(max(beats, default=float("nan"))), _errors(idle_result))  # fmt: skip
    lat = mixed_result.all_latencies()
    table.add("mixed load", mixed_n, len(lat), num(len(lat) / mixed_s),
              ms(percentile(lat, 50)), ms(percentile(lat, 99)),
              ms(max(lat, default=float("nan"))), _errors(mixed_result))  # fmt: skip
    dropped = [t for t in idle_result.dropped_at if t >= killed_at - 1.0]
    back = sorted(t - killed_at for t in idle_result.back_at if t >= killed_at)
    lost = idle_result.stopped - len(ended)
    table.notes += [
        f"open-files limit {fds} per process: HAProxy holds 2 sockets per charger, so at most "
        f"{max_chargers(fds)} chargers (limit - {HAPROXY_RESERVE_FDS} reserve) / 2",
        f"connect through HAProxy: {idle.connected} of {n} in {connect_s:.1f} s "
        f"(Boot, Status, StartTransaction, Status each); placement {placed}",
        f"nodes' CPU in the mixed window: {cpu_mixed:.1f} s over {mixed_s:g} s",
        f"kill -9 node{victim + 1} (held {placed.get(f'node{victim + 1}', 0)}): "
        f"{len(dropped)} chargers dropped, {len(back)} back "
        f"(p50 {num(percentile(back, 50))} s, all back after {num(max(back, default=0.0))} s; "
        f"reconnect delay spread {spread_s:g} s, HAProxy down after "
        f"{TIMING.fall} x {TIMING.inter_ms} ms); placement after {placed_after}",
        f"sessions open at the kill: {n - _errors_in_setup(idle_result)}; StopTransaction "
        f"acknowledged {idle_result.stopped}; CDRs delivered {len(ended)}; lost {lost}; "
        f"session-posts delivered again {emp.duplicates}; "
        f"EVSEs with more than one CDR {sum(1 for v in ended.values() if v > 1)}",
        f"outbox rows not delivered at the end: {outbox or 'none'}",
    ]
    return table


def _errors_in_setup(load: LoadResult) -> int:
    return sum(sum(r["failed"].values()) for r in load.ready)
