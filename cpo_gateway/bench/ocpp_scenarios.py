"""Benchmark scenarios on the OCPP side, each run against the gateway and the baseline:
mixed load (1.6 and 2.0.1), 10,000 idle chargers, a MeterValues burst, a reconnect storm,
paced Authorize."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpo_gateway.bench.generator import LoadResult, LoadRun, LoadSpec
from cpo_gateway.bench.report import Table, ms, num, percentile, ratio
from cpo_gateway.bench.servers import (
    CHARGERS_PER_STATION,
    INBOUND_KEY,
    OCPP_PATH,
    OUTBOUND_KEY,
    PARTNER,
    ServerProcess,
    Usage,
    cards,
    charger_ids,
)
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp

SYSTEMS = ("gateway", "baseline")


@dataclass
class Context:
    """Where runs keep their files and how many load processes they use."""

    workdir: Path
    workers: int = 2
    runs: int = 0

    def directory(self, name: str) -> Path:
        self.runs += 1
        return self.workdir / f"{self.runs:02d}-{name}"


@dataclass
class Figures:
    system: str
    load: LoadResult
    window_s: float
    server: Usage  # CPU is the window's, peak RSS the process's
    setup_s: float
    database_cpu_s: float = 0.0  # the window's CPU of a database server beside the gateway


async def ocpp_run(
    ctx: Context,
    system: str,
    behaviour: str,
    n: int,
    window_s: float,
    *,
    validate_schemas: bool = True,
    together: asyncio.Barrier | None = None,
    storage_url: str | None = None,
    database_cpu: Callable[[], float] | None = None,
    **spec: Any,
) -> Figures:
    """Start the system, connect n chargers, play `behaviour` for window_s, measure.
    `validate_schemas` False runs the gateway without its schema check (for comparison);
    runs sharing `together` start their measured windows at the same moment; `storage_url`:
    the gateway's storage (None: SQLite), `database_cpu` the CPU seconds of its server."""
    directory = ctx.directory(f"{behaviour}-{system}")
    whitelist = cards(max(1, min(n, 1000)))
    emp: SandboxEmp | None = None
    if system == "gateway":
        emp = SandboxEmp(api_key=OUTBOUND_KEY)
        await emp.start()
        server = ServerProcess.gateway(
            directory, n, emp.url, validate_schemas, storage_url=storage_url
        )
    else:
        server = ServerProcess.baseline(directory, spec.get("protocol", "1.6"))
    run: LoadRun | None = None
    try:
        await server.start()
        if emp is not None:
            await prepare_gateway(server.oioi_url, emp, n, whitelist)
        load_spec = LoadSpec(
            behaviour,
            "127.0.0.1",
            server.port,
            OCPP_PATH,
            charger_ids(n),
            cards=whitelist,
            seconds=window_s,
            **spec,
        )
        run = LoadRun(load_spec, ctx.workers, whitelist)
        setup_started = time.monotonic()
        await run.start()
        setup_s = time.monotonic() - setup_started
        # Commands the gateway sends after a connect (local list, status trigger) settle first.
        await asyncio.sleep(1.0 if n < 1000 else 5.0)
        if together is not None:
            async with asyncio.timeout(120):  # the other run failed to start: give up too
                await together.wait()
        before, db_before = server.usage(), database_cpu() if database_cpu else 0.0
        start = time.time() + 0.3
        run.go(start, start + window_s)
        result = await run.finish()
        after, db_after = server.usage(), database_cpu() if database_cpu else 0.0
    finally:
        if run is not None:
            run.kill()
        await server.stop()
        if emp is not None:
            await emp.stop()
    usage = Usage(after.cpu_s - before.cpu_s, after.rss_mb, after.peak_rss_mb)
    return Figures(system, result, window_s, usage, setup_s, db_after - db_before)


async def prepare_gateway(oioi_url: str, emp: SandboxEmp, n: int, uids: tuple[str, ...]) -> None:
    """Wait for the stations' station-posts, then whitelist `uids` through `oioi_url`."""
    stations = (n + CHARGERS_PER_STATION - 1) // CHARGERS_PER_STATION
    # Connector statuses are held until their station is posted: wait, so the run is steady.
    await emp.wait_for(lambda: len(emp.stations) >= stations, timeout=30 + stations / 50)
    async with EmpClient(oioi_url, INBOUND_KEY, timeout=120) as client:
        status, body = await client.rfid_post(PARTNER, list(uids))
    if status != 200 or body.get("result", {}).get("code") != 0:
        raise RuntimeError(f"rfid-post refused: {status} {body}")


def _errors(load: LoadResult) -> str:
    failed = sum(sum(r["failed"].values()) for r in load.ready)
    return str(sum(load.errors.values()) + failed)


def _error_notes(table: Table, figures: list[Figures]) -> None:
    for f in figures:
        kinds = dict(f.load.errors)
        for r in f.load.ready:
            for k, v in r["failed"].items():
                kinds[k] = kinds.get(k, 0) + v
        if kinds:
            shown = ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())[:6])
            table.notes.append(f"{f.system} errors: {shown}")


async def mixed(ctx: Context, n: int = 100, seconds: float = 20.0) -> Table:
    figures = [await ocpp_run(ctx, s, "mixed", n, seconds) for s in SYSTEMS]
    return _mixed_table(f"mixed load, {n} chargers, {seconds:g} s closed loop", figures)


async def mixed201(ctx: Context, n: int = 100, seconds: float = 20.0) -> Table:
    """The 2.0.1 mix against the gateway and the `ocpp` library's 2.0.1 README server."""
    figures = [
        await ocpp_run(ctx, s, "mixed201", n, seconds, protocol="2.0.1", start_transaction=True)
        for s in SYSTEMS
    ]
    title = f"OCPP 2.0.1 mixed load, {n} stations, {seconds:g} s closed loop"
    return _mixed_table(title, figures)


def _mixed_table(title: str, figures: list[Figures]) -> Table:
    table = Table(
        title,
        (
            "system",
            "calls",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "server CPU s",
            "peak RSS MB",
            "loadgen CPU s",
            "errors",
        ),
    )
    rates = []
    for f in figures:
        lat = f.load.all_latencies()
        rates.append(f.load.answered / f.window_s)
        table.add(
            f.system,
            f.load.answered,
            num(rates[-1]),
            ms(percentile(lat, 50)),
            ms(percentile(lat, 99)),
            ms(max(lat, default=float("nan"))),
            num(f.server.cpu_s, 2),
            num(f.server.peak_rss_mb),
            num(f.load.cpu_s, 2),
            _errors(f.load),
        )
    g, b = (f.load.all_latencies() for f in figures)
    table.add(
        "gateway/baseline",
        "",
        ratio(rates[0], rates[1]),
        ratio(percentile(g, 50), percentile(b, 50)),
        ratio(percentile(g, 99), percentile(b, 99)),
        ratio(max(g, default=0.0), max(b, default=0.0)),
        ratio(figures[0].server.cpu_s, figures[1].server.cpu_s),
        ratio(figures[0].server.peak_rss_mb, figures[1].server.peak_rss_mb),
        "",
        "",
    )
    for f in figures:
        per_action = ", ".join(
            f"{a} {len(v)} p99 {ms(percentile(v, 99))}" for a, v in sorted(f.load.latencies.items())
        )
        table.notes.append(f"{f.system}: {per_action}")
        if f.load.answered:
            table.notes.append(
                f"{f.system}: server CPU per call {f.server.cpu_s / f.load.answered * 1e6:.0f} us"
            )
    table.notes.append("target: gateway calls/s >= 1.5x baseline, gateway p99 <= baseline p99")
    _error_notes(table, figures)
    return table


async def idle(
    ctx: Context, n: int = 10_000, seconds: float = 30.0, heartbeat_s: float = 10.0
) -> Table:
    table = Table(
        f"{n} chargers connected, heartbeat every {heartbeat_s:g} s for {seconds:g} s",
        (
            "system",
            "connected",
            "connect s",
            "heartbeats",
            "p50 ms",
            "p99 ms",
            "max ms",
            "server CPU s",
            "peak RSS MB",
            "errors",
        ),
    )
    figures = []
    for system in SYSTEMS:
        f = await ocpp_run(ctx, system, "idle", n, seconds, heartbeat_s=heartbeat_s)
        figures.append(f)
        lat = f.load.all_latencies()
        table.add(
            system,
            f.load.connected_at_end,
            num(f.setup_s),
            len(lat),
            ms(percentile(lat, 50)),
            ms(percentile(lat, 99)),
            ms(max(lat, default=float("nan"))),
            num(f.server.cpu_s, 2),
            num(f.server.peak_rss_mb),
            _errors(f.load),
        )
    table.notes.append("target: all served, gateway peak RSS <= 512 MB")
    _error_notes(table, figures)
    return table


async def burst(ctx: Context, n: int = 5_000, spread_s: float = 1.0) -> Table:
    table = Table(
        f"burst: {n} MeterValues from {n} chargers (in transactions) within {spread_s:g} s",
        (
            "system",
            "answered",
            "p50 ms",
            "p99 ms",
            "max ms",
            "server CPU s",
            "peak RSS MB",
            "errors",
        ),
    )
    figures = []
    for system in SYSTEMS:
        f = await ocpp_run(
            ctx, system, "burst", n, spread_s + 60.0, spread_s=spread_s, start_transaction=True
        )
        figures.append(f)
        lat = f.load.latencies.get("MeterValues", [])
        table.add(
            system,
            len(lat),
            ms(percentile(lat, 50)),
            ms(percentile(lat, 99)),
            ms(max(lat, default=float("nan"))),
            num(f.server.cpu_s, 2),
            num(f.server.peak_rss_mb),
            _errors(f.load),
        )
    table.notes.append("target: all answered, gateway p99 < 3 s (answered after commit)")
    _error_notes(table, figures)
    return table


async def storm(ctx: Context, n: int = 5_000, spread_s: float = 10.0) -> Table:
    table = Table(
        f"reconnect storm: {n} chargers drop and reconnect within {spread_s:g} s",
        (
            "system",
            "back",
            "p50 back s",
            "all back s",
            "Boot p99 ms",
            "server CPU s",
            "peak RSS MB",
            "errors",
        ),
    )
    figures = []
    for system in SYSTEMS:
        f = await ocpp_run(ctx, system, "storm", n, 60.0, spread_s=spread_s)
        figures.append(f)
        back = f.load.back_at
        boots = f.load.latencies.get("BootNotification", [])
        everyone = max(back) if len(back) == n else float("nan")
        table.add(
            system,
            len(back),
            num(percentile(back, 50)),
            num(everyone),
            ms(percentile(boots, 99)),
            num(f.server.cpu_s, 2),
            num(f.server.peak_rss_mb),
            _errors(f.load),
        )
    table.notes.append(
        "back = reconnected, BootNotification Accepted and StatusNotification answered; "
        "target: all back within 30 s"
    )
    _error_notes(table, figures)
    return table


async def authorize(
    ctx: Context, n: int = 50, rate: float = 1000.0, seconds: float = 10.0
) -> Table:
    table = Table(
        f"Authorize of whitelisted cards at {rate:g}/s from {n} chargers for {seconds:g} s",
        ("system", "answered", "rate/s", "p50 ms", "p99 ms", "max ms", "server CPU s", "errors"),
    )
    figures = []
    for system in SYSTEMS:
        f = await ocpp_run(ctx, system, "authorize", n, seconds, rate=rate)
        figures.append(f)
        lat = f.load.latencies.get("Authorize", [])
        table.add(
            system,
            len(lat),
            num(len(lat) / seconds),
            ms(percentile(lat, 50)),
            ms(percentile(lat, 99)),
            ms(max(lat, default=float("nan"))),
            num(f.server.cpu_s, 2),
            _errors(f.load),
        )
    table.notes.append("target: gateway p99 < 5 ms; the baseline accepts every card from memory")
    _error_notes(table, figures)
    return table
