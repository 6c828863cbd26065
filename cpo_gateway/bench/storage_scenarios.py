"""`scripts/bench --scenario storage`: the 1.6 mixed load against one gateway node storing in
SQLite and one storing in PostgreSQL, one after the other in the same run.

The PostgreSQL server is a throwaway one (bench/pg_server.py: initdb in a temporary directory,
a loopback port, fsync off, synchronous_commit on): the figures compare the two backends'
code paths and round trips on this machine, not a tuned database on its own disks. Server CPU
per call counts the gateway's CPU and, on PostgreSQL, the database server's too.
"""

from __future__ import annotations

import asyncio

from cpo_gateway.bench.ocpp_scenarios import Context, Figures, ocpp_run
from cpo_gateway.bench.pg_server import throwaway_postgres
from cpo_gateway.bench.report import Table, ms, num, percentile, ratio

COLUMNS = ("storage", "calls", "calls/s", "p50 ms", "p99 ms", "max ms", "gateway CPU s",
           "db CPU s", "CPU us/call", "errors")  # fmt: skip


def _errors(f: Figures) -> int:
    failed = sum(sum(r["failed"].values()) for r in f.load.ready)
    return sum(f.load.errors.values()) + failed


async def storage(ctx: Context, n: int = 100, seconds: float = 20.0) -> Table:
    async with throwaway_postgres() as pg:
        url = await asyncio.to_thread(pg.create_database)
        sqlite = await ocpp_run(ctx, "gateway", "mixed", n, seconds)
        postgres = await ocpp_run(
            ctx, "gateway", "mixed", n, seconds, storage_url=url, database_cpu=pg.cpu_seconds
        )
    table = Table(f"storage: mixed load, {n} chargers, {seconds:g} s closed loop", COLUMNS)
    rates, per_call, lats = [], [], []
    for label, f in (("sqlite", sqlite), ("postgresql", postgres)):
        lat = f.load.all_latencies()
        cpu = f.server.cpu_s + f.database_cpu_s
        rates.append(f.load.answered / f.window_s)
        per_call.append(cpu / f.load.answered * 1e6 if f.load.answered else float("nan"))
        lats.append(lat)
        table.add(
            label,
            f.load.answered,
            num(rates[-1]),
            ms(percentile(lat, 50)),
            ms(percentile(lat, 99)),
            ms(max(lat, default=float("nan"))),
            num(f.server.cpu_s, 2),
            num(f.database_cpu_s, 2) if label == "postgresql" else "-",
            num(per_call[-1], 0),
            _errors(f),
        )
        per_action = ", ".join(
            f"{a} p99 {ms(percentile(v, 99))}" for a, v in sorted(f.load.latencies.items())
        )
        table.notes.append(f"{label}: {per_action}")
    table.add(
        "postgresql/sqlite",
        "",
        ratio(rates[1], rates[0]),
        ratio(percentile(lats[1], 50), percentile(lats[0], 50)),
        ratio(percentile(lats[1], 99), percentile(lats[0], 99)),
        ratio(max(lats[1], default=0.0), max(lats[0], default=0.0)),
        ratio(postgres.server.cpu_s, sqlite.server.cpu_s),
        "",
        ratio(per_call[1], per_call[0]),
        "",
    )
    table.notes.append(
        "PostgreSQL: a throwaway server on loopback (fsync off, synchronous_commit on); "
        "CPU us/call = (gateway + database CPU) / calls"
    )
    return table
