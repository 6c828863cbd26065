"""Benchmark scenario of the OCPP TLS port under a flood of silent sockets.

`idle` TCP connections are opened to the TLS port and never send a ClientHello (a port
scanner, a stuck load balancer, a slowloris); meanwhile `chargers` profile-2 chargers (TLS
and Basic auth) connect and boot. The chargers connect three times: on a quiet port (the first
login checks each password with scrypt, later ones are answered from memory), again on the
quiet port, and beside the flood, so the last two compare like with like. The gateway must serve
the chargers and close every silent socket once `[ocpp] open_timeout_s` (the TLS handshake
timeout, tlsgate.py) has passed; the figures are the chargers' connect and boot times, how
long after opening each silent socket was closed by the gateway, how many were still open
when the wait ended, and the gateway's open descriptors before, at the peak and after.
Everything runs on loopback, every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.typing import Subprotocol

from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bench.servers import OCPP_PATH, OUTBOUND_KEY, ServerProcess, charger_ids
from cpo_gateway.csms.passwords import hash_password
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import SimPki

PASSWORD = "bench-flood-password-0001"  # noqa: S105 (the bench chargers' own)
HANDSHAKE_TIMEOUT_S = 10.0  # the gateway's default [ocpp] open_timeout_s
CLOSE_MARGIN_S = 30.0  # how long past the handshake timeout a silent socket may stay open
CONNECT_TIMEOUT_S = 60.0
BOOT = {"chargePointVendor": "Bench", "chargePointModel": "Flood"}


@dataclass
class Round:
    """One round of chargers: seconds to the 101 and to the Boot answer, and the failures."""

    connect_s: list[float] = field(default_factory=list)
    boot_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


@dataclass
class Flood:
    """The silent sockets: when each was opened and, once the gateway closed it, how long it
    had stayed open; bytes the gateway sent on them (it should send none)."""

    opened: int = 0
    open_errors: list[str] = field(default_factory=list)
    closed_after_s: list[float] = field(default_factory=list)
    bytes_received: int = 0
    open_s: float = 0.0


def _basic(cp_id: str) -> str:
    return "Basic " + base64.b64encode(f"{cp_id}:{PASSWORD}".encode()).decode()


async def _charger(url: str, cp_id: str, ctx: ssl.SSLContext, result: Round) -> None:
    started = time.perf_counter()
    try:
        async with connect(
            f"{url}/{cp_id}",
            subprotocols=[Subprotocol("ocpp1.6")],
            ssl=ctx,
            additional_headers={"Authorization": _basic(cp_id)},
            open_timeout=CONNECT_TIMEOUT_S,
        ) as ws:
            result.connect_s.append(time.perf_counter() - started)
            await ws.send(json.dumps([2, "boot-1", "BootNotification", BOOT]))
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                while True:  # the gateway may send its own calls after the answer
                    frame = json.loads(await ws.recv())
                    if frame[0] in (3, 4) and frame[1] == "boot-1":
                        break
            if frame[0] != 3 or frame[2].get("status") != "Accepted":
                result.errors.append(f"boot answered {frame[0]} {frame[2]}")
                return
            result.boot_s.append(time.perf_counter() - started)
    except InvalidStatus as exc:
        result.errors.append(f"HTTP {exc.response.status_code}")
    except (OSError, TimeoutError, ssl.SSLError, WebSocketException) as exc:
        result.errors.append(type(exc).__name__)


async def _round(url: str, ids: tuple[str, ...], ctx: ssl.SSLContext) -> Round:
    result = Round()
    started = time.perf_counter()
    await asyncio.gather(*(_charger(url, cp_id, ctx, result) for cp_id in ids))
    result.wall_s = time.perf_counter() - started
    return result


Silent = tuple[asyncio.StreamReader, asyncio.StreamWriter, float]


async def _open_silent(port: int, flood: Flood) -> Silent | None:
    """One socket that will never send a byte (no ClientHello)."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except (OSError, TimeoutError) as exc:
        flood.open_errors.append(type(exc).__name__)
        return None
    flood.opened += 1
    return reader, writer, time.monotonic()


async def _wait_closed(silent: Silent, flood: Flood, deadline: float) -> None:
    """Waits (bounded) for the gateway to close the socket; counts what it sent on it."""
    reader, writer, opened = silent
    try:
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    data = await reader.read(4096)
            except TimeoutError:
                return  # still open when the wait ended: not counted as closed
            except OSError:
                data = b""  # reset by the gateway: closed all the same
            if not data:
                flood.closed_after_s.append(time.monotonic() - opened)
                return
            flood.bytes_received += len(data)
    finally:
        writer.transport.abort()


async def _sample_fds(pid: int, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            samples.append(len(os.listdir(f"/proc/{pid}/fd")))
        except OSError:
            return
        try:
            async with asyncio.timeout(0.2):
                await stop.wait()
        except TimeoutError:
            pass


async def tls_flood(ctx: Context, idle: int = 2_000, chargers: int = 100) -> Table:
    table = Table(
        f"TLS port: {chargers} profile-2 chargers connect and boot, alone and beside {idle:,} "
        "silent sockets",
        (
            "round",
            "chargers",
            "booted",
            "failed",
            "wall s",
            "connect p50 ms",
            "connect p99 ms",
            "boot p99 ms",
        ),
    )
    directory = ctx.directory("tls-flood-gateway")
    pki = SimPki(directory / "pki")
    tls = f'cert_file = "{pki.server.cert}"\nkey_file = "{pki.server.key}"\n'
    emp = SandboxEmp(api_key=OUTBOUND_KEY)
    await emp.start()
    server = ServerProcess.gateway(
        directory,
        chargers,
        emp.url,
        security_profile=2,
        tls=tls,
        password_hash=hash_password(PASSWORD),
    )
    client = pki.client_context()
    ids = charger_ids(chargers)
    flood = Flood()
    fds: list[int] = []
    try:
        await server.start()
        url = f"wss://127.0.0.1:{server.port}{OCPP_PATH}"
        fds_before = len(os.listdir(f"/proc/{server.pid}/fd"))
        first = await _round(url, ids, client)  # each password checked (scrypt) once
        quiet = await _round(url, ids, client)
        before = server.usage()
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_fds(server.pid, fds, stop))
        started = time.monotonic()
        opened = await asyncio.gather(*(_open_silent(server.port, flood) for _ in range(idle)))
        flood.open_s = time.monotonic() - started
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S + CLOSE_MARGIN_S
        waits = [
            asyncio.create_task(_wait_closed(o, flood, deadline)) for o in opened if o is not None
        ]
        flooded = await _round(url, ids, client)
        await asyncio.gather(*waits)
        stop.set()
        await sampler
        after = server.usage()
        fds_after = len(os.listdir(f"/proc/{server.pid}/fd"))
    finally:
        await server.stop()
        await emp.stop()
    rounds = (
        ("quiet port, first login", first),
        ("quiet port", quiet),
        (f"beside {idle:,} silent sockets", flooded),
    )
    for name, r in rounds:
        table.add(
            name,
            chargers,
            len(r.boot_s),
            len(r.errors),
            num(r.wall_s, 2),
            ms(percentile(r.connect_s, 50)),
            ms(percentile(r.connect_s, 99)),
            ms(percentile(r.boot_s, 99)),
        )
        if r.errors:
            table.notes.append(f"{name}: failures " + ", ".join(sorted(set(r.errors))))
    closed = flood.closed_after_s
    table.notes += [
        f"silent sockets: {flood.opened:,} opened in {flood.open_s:.1f} s "
        f"({len(flood.open_errors)} failed to open), {len(closed):,} closed by the gateway "
        f"(after p50 {num(percentile(closed, 50), 1)} s, max {num(max(closed, default=0.0), 1)}"
        f" s; handshake timeout {HANDSHAKE_TIMEOUT_S:g} s), "
        f"{flood.opened - len(closed):,} still open after "
        f"{HANDSHAKE_TIMEOUT_S + CLOSE_MARGIN_S:g} s, {flood.bytes_received} bytes sent to them",
        f"gateway descriptors: {fds_before} before, peak {max(fds, default=0)}, "
        f"{fds_after} after the flood; flood CPU {after.cpu_s - before.cpu_s:.2f} s, "
        f"peak RSS {after.peak_rss_mb:.0f} MB",
    ]
    return table
