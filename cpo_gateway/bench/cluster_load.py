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
# The example's own health checks (every 2 s, down after 3 failures, up after 2). A connect to
# a dead node is refused and redispatched at once, so chargers need not wait for the checks;
# with checks every 0.5 s, down after 2, a run of 5,000 chargers lost a surviving node's
# chargers too in the reconnect storm (most likely its /healthz answered late, it was marked
# down and HAProxy cut its sessions).
TIMING = Timing(inter_ms=2000, fall=3, rise=2)


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
        """Rows not delivered, by "state kind (claimed by node)"."""
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute(
                "SELECT state, kind, coalesce(claimed_by, '-'), count(*) FROM outbox"
                " WHERE state <> 'delivered' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            )
            return {f"{s} {k} ({by})": int(n) for s, k, by, n in await cur.fetchall()}


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
            await nodes[0].start(timeout_s=120)  # the first applies the migrations
            await asyncio.gather(*(node.start(timeout_s=120) for node in nodes[1:]))
            await asyncio.to_thread(proxy.start)
            yield Cluster(nodes, proxy, url)
        finally:
            await asyncio.to_thread(proxy.stop)
            await asyncio.gather(*(node.stop() for node in nodes))


def _errors(load: LoadResult) -> int:
    return sum(load.errors.values()) + sum(sum(r["failed"].values()) for r in load.ready)


def _kinds(load: LoadResult) -> dict[str, int]:
    kinds = dict(load.errors)
    for r in load.ready:
        for k, v in r["failed"].items():
            kinds[k] = kinds.get(k, 0) + v
    return kinds


def _ended(cdrs: Sequence[dict[str, object]], evses: set[str]) -> dict[str, int]:
    """CDRs with a stop time per EVSE of `evses` (each distinct session-id once)."""
    found: dict[str, int] = {}
    for cdr in cdrs:
        interval = cdr.get("session-interval")
        evse = str(cdr.get("connector-id"))
        if evse in evses and isinstance(interval, dict) and interval.get("stop"):
            found[evse] = found.get(evse, 0) + 1
    return found


@dataclass
class ClusterFigures:
    """What one cluster run measured; times after the kill are seconds from it."""

    n: int
    mixed_n: int
    mixed_s: float
    window_s: float
    connected: int
    connect_s: float
    idle: LoadResult
    mixed: LoadResult
    cpu_mixed_s: float
    placed: dict[str, int]  # just before the kill
    placed_after: dict[str, int]  # once the reconnects are over
    victim: str
    dropped: int
    back_s: list[float]
    cdrs: dict[str, int]  # per EVSE of the heartbeating chargers: CDRs with a stop
    duplicates: int
    outbox_left: dict[str, int]
    outbox_settle_s: float  # from the last CDR at the EMP until no row is left undelivered

    @property
    def open_at_kill(self) -> int:
        return self.n - sum(sum(r["failed"].values()) for r in self.idle.ready)

    @property
    def lost(self) -> int:
        """Acknowledged StopTransactions without a CDR at the EMP."""
        return self.idle.stopped - len(self.cdrs)


async def measure(
    ctx: Context,
    n: int,
    *,
    mixed_n: int,
    mixed_s: float,
    heartbeat_s: float,
    spread_s: float,
    recovery_s: float,
) -> ClusterFigures:
    total = mixed_n + n
    ids = charger_ids(total)
    whitelist = cards(max(1, min(total, 1000)))
    idle_evses = {evse_id(i) for i in range(mixed_n, total)}
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
            # Where the chargers are near the end of the window, the reconnects over.
            await asyncio.sleep(max(0.0, recovery_s - 2.0))
            placed_after = await c.placement()
            idle_result = await idle.finish(timeout_s=recovery_s + 300)
        finally:
            idle.kill()
            mixed.kill()

        def all_ended() -> bool:
            return len(_ended(list(emp.cdrs.values()), idle_evses)) >= idle_result.stopped

        with contextlib.suppress(TimeoutError):  # the figures say what is missing
            await emp.wait_for(all_ended, timeout=120)
        settle_from = time.monotonic()
        outbox = await c.outbox_left()
        # A row claimed by the killed node waits for its claim to expire ([outbox] claim_s,
        # 60 s by default); one just sent waits for its outcome's commit. Bounded: 90 s.
        for _ in range(180):
            if not outbox:
                break
            await asyncio.sleep(0.5)
            outbox = await c.outbox_left()
        settle_s = time.monotonic() - settle_from
        return ClusterFigures(
            n=n,
            mixed_n=mixed_n,
            mixed_s=mixed_s,
            window_s=mixed_s + recovery_s,
            connected=idle.connected,
            connect_s=connect_s,
            idle=idle_result,
            mixed=mixed_result,
            cpu_mixed_s=cpu_mixed,
            placed=placed,
            placed_after=placed_after,
            victim=f"node{victim + 1}",
            dropped=sum(1 for t in idle_result.dropped_at if t >= killed_at - 1.0),
            back_s=sorted(t - killed_at for t in idle_result.back_at if t >= killed_at),
            cdrs=_ended(list(emp.cdrs.values()), idle_evses),
            duplicates=emp.duplicates,
            outbox_left=outbox,
            outbox_settle_s=settle_s,
        )


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
    f = await measure(ctx, n, mixed_n=mixed_n, mixed_s=mixed_s, heartbeat_s=heartbeat_s,
                      spread_s=spread_s, recovery_s=recovery_s)  # fmt: skip
    table = Table(
        f"cluster: {NODES} nodes behind HAProxy on one PostgreSQL, {n} chargers heartbeating "
        f"every {heartbeat_s:g} s in a transaction, {mixed_n} more in the mixed load",
        ("phase", "chargers", "calls", "calls/s", "p50 ms", "p99 ms", "max ms", "errors"),
    )
    beats = f.idle.latencies.get("Heartbeat", [])
    table.add("heartbeats", n, len(beats), num(len(beats) / f.window_s),
              ms(percentile(beats, 50)), ms(percentile(beats, 99)),
              ms(max(beats, default=float("nan"))), _errors(f.idle))  # fmt: skip
    lat = f.mixed.all_latencies()
    table.add("mixed load", mixed_n, len(lat), num(len(lat) / mixed_s),
              ms(percentile(lat, 50)), ms(percentile(lat, 99)),
              ms(max(lat, default=float("nan"))), _errors(f.mixed))  # fmt: skip
    calls = f.mixed.answered
    table.notes += [
        f"open-files limit {fds} per process: HAProxy holds 2 sockets per charger, so at most "
        f"{max_chargers(fds)} chargers (limit - {HAPROXY_RESERVE_FDS} reserve) / 2",
        f"connect through HAProxy: {f.connected} of {n} in {f.connect_s:.1f} s "
        f"(Boot, Status, StartTransaction, Status each)",
        f"nodes' CPU in the mixed window: {f.cpu_mixed_s:.1f} s over {mixed_s:g} s"
        + (f", {f.cpu_mixed_s / calls * 1e6:.0f} us per mixed call" if calls else ""),
        f"kill -9 {f.victim} (placement {f.placed}): {f.dropped} chargers dropped, "
        f"{len(f.back_s)} back (p50 {num(percentile(f.back_s, 50))} s, all back after "
        f"{num(max(f.back_s, default=0.0))} s; reconnect delay spread {spread_s:g} s, HAProxy "
        f"marks a node down after {TIMING.fall} x {TIMING.inter_ms} ms); "
        f"placement after {f.placed_after}",
        f"sessions open at the kill: {f.open_at_kill}; StopTransaction acknowledged "
        f"{f.idle.stopped}; CDRs delivered {len(f.cdrs)}; lost {f.lost}; session-posts "
        f"delivered again {f.duplicates}; EVSEs with more than one CDR "
        f"{sum(1 for v in f.cdrs.values() if v > 1)}",
        *(
            f"{label} errors: {', '.join(f'{k} x{v}' for k, v in sorted(kinds.items())[:6])}"
            for label, kinds in (("heartbeating", _kinds(f.idle)), ("mixed", _kinds(f.mixed)))
            if kinds
        ),
        f"outbox rows not delivered at the end: {f.outbox_left or 'none'} "
        f"({f.outbox_settle_s:.1f} s after the last CDR)",
    ]
    return table
