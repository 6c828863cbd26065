"""Benchmark scenarios on the EMP side (gateway only: the baseline speaks no OIOI):
rfid-post of large whitelists, session-start end to end, outbox delivery rate."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from cpo_gateway.bench.charger import LoadCharger
from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bench.servers import (
    INBOUND_KEY,
    OCPP_PATH,
    OUTBOUND_KEY,
    PARTNER,
    ServerProcess,
    charger_ids,
    evse_id,
    write_gateway_config,
)
from cpo_gateway.bridge.cdr import CDR_KIND, cdr_to_dict
from cpo_gateway.bridge.model import Cdr, Interval, User, UserKind
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.config import load_config
from cpo_gateway.oioi.client import CALLS
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from cpo_gateway.store import SqliteDatabase, Store

CDR_CALL = CALLS[CDR_KIND]

EVCO = "DE-BEN-C00001-4"


async def _gateway(ctx: Context, name: str, n_chargers: int) -> tuple[ServerProcess, SandboxEmp]:
    emp = SandboxEmp(api_key=OUTBOUND_KEY)
    await emp.start()
    server = ServerProcess.gateway(ctx.directory(name), n_chargers, emp.url)
    try:
        await server.start()
    except BaseException:
        await emp.stop()
        raise
    return server, emp


async def rfid(ctx: Context, sizes: tuple[int, ...] = (100_000, 1_000_000)) -> Table:
    table = Table(
        "rfid-post of a whitelist (fresh gateway per size)",
        (
            "UIDs",
            "processed",
            "request s",
            "server CPU s",
            "RSS before MB",
            "RSS growth MB",
            "RSS after MB",
        ),
    )
    for size in sizes:
        server, emp = await _gateway(ctx, f"rfid-{size}", 10)
        try:
            uids = [f"{0x04000000000000 + i:014X}" for i in range(size)]
            async with EmpClient(server.oioi_url, INBOUND_KEY, timeout=300) as client:
                before = server.usage()
                started = time.perf_counter()
                status, body = await client.rfid_post(PARTNER, uids)
                elapsed = time.perf_counter() - started
                after = server.usage()
            processed = body.get("rfid", {}).get("processed", f"HTTP {status}")
            table.add(
                f"{size:,}",
                processed,
                num(elapsed, 2),
                num(after.cpu_s - before.cpu_s, 2),
                num(before.rss_mb),
                num(after.peak_rss_mb - before.rss_mb),
                num(after.rss_mb),
            )
        finally:
            await server.stop()
            await emp.stop()
    table.notes.append(
        "request s = the EMP's wall time for the HTTP request (upload, parse, store, answer); "
        "growth = peak RSS during the request - RSS before"
    )
    table.notes.append("target: 100,000 < 1 s; 1,000,000 < 10 s and < 200 MB growth")
    return table


async def session_start(ctx: Context, sessions: int = 200, n_chargers: int = 10) -> Table:
    table = Table(
        f"session-start end to end (EMP -> gateway -> charger -> EMP), {sessions} sessions",
        ("call", "count", "p50 ms", "p99 ms", "max ms", "charger reply p50 ms", "errors"),
    )
    server, emp = await _gateway(ctx, "session-start", n_chargers)
    chargers = [
        LoadCharger(cp, "127.0.0.1", server.port, OCPP_PATH) for cp in charger_ids(n_chargers)
    ]
    tasks: set[asyncio.Task[object]] = set()
    starts: list[float] = []
    stops: list[float] = []
    errors = 0
    try:
        await emp.wait_for(lambda: len(emp.stations) >= 1, timeout=30)
        for ch in chargers:
            await ch.connect()
            await ch.boot()
            await ch.status("Available")
            _follow_remote_commands(ch, tasks)
        await asyncio.sleep(1.0)
        async with EmpClient(server.oioi_url, INBOUND_KEY) as client:
            await _one_session(client, chargers[0], 0)  # warm-up, not counted
            for i in range(sessions):
                k = i % n_chargers
                try:
                    start_s, stop_s = await _one_session(client, chargers[k], k)
                except (TimeoutError, RuntimeError):
                    errors += 1
                    continue
                starts.append(start_s)
                stops.append(stop_s)
    finally:
        for ch in chargers:
            ch.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        await emp.stop()
    replies = [x for ch in chargers for x in ch.reply_seconds]
    reply_p50 = ms(percentile(replies, 50))
    for name, values in (("session-start", starts), ("session-stop", stops)):
        table.add(
            name,
            len(values),
            ms(percentile(values, 50)),
            ms(percentile(values, 99)),
            ms(max(values, default=float("nan"))),
            reply_p50,
            errors,
        )
    table.notes.append(
        "times are the EMP's HTTP round trip minus the charger's own time to answer "
        "RemoteStart/Stop; target: session-start p50 < 5 ms"
    )
    return table


async def _one_session(client: EmpClient, ch: LoadCharger, k: int) -> tuple[float, float]:
    """One remote start and stop; the start's time excludes the charger's own reply time."""
    replies = len(ch.reply_seconds)
    started = time.perf_counter()
    status, body = await client.session_start(evse_id(k), EVCO)
    elapsed = time.perf_counter() - started
    if status != 200 or body.get("result", {}).get("code") != 0:
        raise RuntimeError(f"session-start: {status} {body}")
    start_s = elapsed - sum(ch.reply_seconds[replies:])
    await _wait(lambda: ch.tx_id is not None)
    started = time.perf_counter()
    status, body = await client.session_stop(evse_id(k), EVCO, body["session-start"]["session-id"])
    stop_s = time.perf_counter() - started
    if status != 200 or body.get("result", {}).get("code") != 0:
        raise RuntimeError(f"session-stop: {status} {body}")
    await _wait(lambda: ch.tx_id is None)
    return start_s, stop_s


def _follow_remote_commands(ch: LoadCharger, tasks: set[asyncio.Task[object]]) -> None:
    """A RemoteStart is followed by StartTransaction, a RemoteStop by StopTransaction."""

    def keep(coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    ch.on_remote_start = lambda id_tag: keep(ch.start_transaction(id_tag))
    ch.on_remote_stop = lambda: keep(ch.stop_transaction())


async def _wait(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the charger did not follow the remote command")
        await asyncio.sleep(0.0005)


async def outbox(ctx: Context, rows: int = 5_000) -> Table:
    """session-posts already queued when the gateway starts; rate = delivered / time taken."""
    table = Table(
        f"outbox: {rows} session-posts queued, delivered to the sandbox EMP",
        ("rows", "delivered", "seconds", "posts/s", "steady posts/s", "server CPU s", "dead"),
    )
    directory = ctx.directory("outbox")
    emp = SandboxEmp(api_key=OUTBOUND_KEY)
    await emp.start()
    try:
        config = write_gateway_config(directory, 10, emp.url, 0, 0)
        await _prefill(load_config(config, {}).gateway.database, rows)
        server = ServerProcess.gateway(directory, 10, emp.url)
        started = time.time()
        await server.start()
        before = server.usage()
        with contextlib.suppress(TimeoutError):
            await emp.wait_for(lambda: len(emp.cdrs) >= rows, timeout=rows / 50 + 60)
        after = server.usage()
        await server.stop()
    finally:
        await emp.stop()
    times = sorted(r.received_at for r in emp.requests if r.call == CDR_CALL)
    delivered = len(emp.cdrs)
    total = (times[-1] - started) if times else float("nan")
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    dead = sum(1 for r in emp.requests if r.call == CDR_CALL and r.answered_status != 200)
    table.add(
        rows,
        delivered,
        num(total),
        num(delivered / total if times else float("nan")),
        num(steady),
        num(after.cpu_s - before.cpu_s, 2),
        dead,
    )
    table.notes.append(
        "seconds from the gateway's process start to the last session-post received; "
        "steady = between the first and the last; target: >= 1,000 posts/s"
    )
    return table


async def _prefill(database: object, rows: int) -> None:
    from pathlib import Path

    assert isinstance(database, Path)
    database.parent.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(database)
    await db.open()
    try:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        batch: list[NewOutbox] = []
        for i in range(rows):
            sid = str(uuid.uuid4())
            cdr = Cdr(
                sid,
                evse_id(i % 10),
                User(UserKind.RFID, f"{0xB0000000 + i:08X}"),
                Interval(stamp, end),
                PARTNER,
                energy_kwh=12.5,
            )
            batch.append(NewOutbox("sandbox", CDR_KIND, sid, cdr_to_dict(cdr)))
        await Store(db).enqueue(batch, now)
    finally:
        await db.close()
