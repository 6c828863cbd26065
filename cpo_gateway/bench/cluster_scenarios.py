"""`scripts/bench --scenario cluster-commands`: a command to a charger on another node.

Two gateway nodes in this process store in one PostgreSQL database (CPO_GATEWAY_BENCH_PG_URL:
an empty database, or one the benchmark used before); chargers are connected to node b, and the
same TriggerMessage commands are sent from node b (local) and from node a (over
LISTEN/NOTIFY to b and back). Each charger takes one command at a time, so the commands run
concurrently across chargers and one after another on each.

Both nodes and the chargers share one event loop: the figures are the bus's cost beside a
local command on this machine, not a node's capacity.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable

from cpo_gateway.app import Gateway
from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bench.servers import charger_ids, write_gateway_config
from cpo_gateway.bridge.model import CommandResult, CommandStatus
from cpo_gateway.config import load_config
from cpo_gateway.config_storage import STORAGE_URL_ENV
from cpo_gateway.sim.charger.simulator import SimCharger

URL_ENV = "CPO_GATEWAY_BENCH_PG_URL"


async def _node(ctx: Context, name: str, url: str, chargers: int) -> Gateway:
    path = write_gateway_config(ctx.directory(name), chargers, "http://127.0.0.1:9/", 0, 0)
    cfg = load_config(path, {STORAGE_URL_ENV: url})  # both nodes store in the one database
    cluster = dataclasses.replace(cfg.cluster, node_id=name, heartbeat_s=0.5, alive_s=5.0)
    gateway = Gateway(dataclasses.replace(cfg, cluster=cluster))
    await gateway.start()
    return gateway


async def _round(
    ids: tuple[str, ...], per_charger: int, send: Callable[[str], Awaitable[CommandResult]]
) -> tuple[list[float], float, int]:
    """Latencies, elapsed seconds and failures of `per_charger` commands to each charger."""
    latencies: list[float] = []
    failed = 0

    async def one(cp: str) -> None:
        nonlocal failed
        for _ in range(per_charger):
            started = time.perf_counter()
            result = await send(cp)
            latencies.append(time.perf_counter() - started)
            failed += result.status is not CommandStatus.ACCEPTED

    started = time.perf_counter()
    await asyncio.gather(*(one(cp) for cp in ids))
    return latencies, time.perf_counter() - started, failed


async def cluster_commands(ctx: Context, chargers: int, per_charger: int) -> Table:
    url = os.environ.get(URL_ENV)
    if not url:
        raise RuntimeError(f"set {URL_ENV} to a PostgreSQL database the benchmark may use")
    a = await _node(ctx, "a", url, chargers)
    b = await _node(ctx, "b", url, chargers)
    ids = charger_ids(chargers)
    sims = [SimCharger(cp, f"ws://127.0.0.1:{b.csms.port}/ocpp", call_timeout=30) for cp in ids]
    table = Table(
        f"cluster-commands: {chargers} chargers on node b, {per_charger} TriggerMessage each",
        ("sent from", "commands", "per s", "p50 ms", "p99 ms", "failed"),
    )
    try:
        for sim in sims:
            await sim.__aenter__()
            await sim.connect()
        assert a.cluster is not None and b.cluster is not None
        for _ in range(600):  # node a learns where the chargers are (bounded: 30 s)
            if all(a.cluster.control.node_of(cp) == "b" for cp in ids):
                break
            await asyncio.sleep(0.05)
        local, remote = b.cluster.control, a.cluster.control
        for label, control in (("node b (local)", local), ("node a (via PostgreSQL)", remote)):
            lat, took, failed = await _round(ids, per_charger, control.trigger_status)
            table.add(
                label,
                len(lat),
                num(len(lat) / took, 0),
                ms(percentile(lat, 50)),
                ms(percentile(lat, 99)),
                failed,
            )
    finally:
        for sim in sims:
            await sim.close()
        await a.stop()
        await b.stop()
    table.notes.append("both nodes and the chargers in one process and one event loop")
    return table
