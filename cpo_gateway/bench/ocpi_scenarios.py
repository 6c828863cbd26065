"""OCPI benchmark: the credentials handshake both ways and authenticated requests, between
the gateway's OCPI listener (with its registrar and a SQLite file) and the sandbox eMSP, in
one process on loopback. What it measures is the gateway's own cost per handshake and per
request (token lookup by digest, the envelope, the middleware), not a network."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bridge.links import LinkState, PartnerLink
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.registration import Identity, PartnerSettings, Registrar
from cpo_gateway.ocpi.server import OcpiServer
from cpo_gateway.ocpi.transport import Party, encode_token
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from cpo_gateway.store import SqliteDatabase, Store

OURS = Party("DE", "CPO")


async def registration(ctx: Context, rounds: int = 50, requests: int = 5_000) -> Table:
    table = Table(
        f"ocpi-registration: {rounds} handshakes each way, {requests} authenticated GETs",
        ("what", "n", "p50 ms", "p99 ms", "per s"),
    )
    directory = ctx.directory("ocpi-registration")
    directory.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(directory / "gateway.db")
    await db.open()
    store = Store(db)
    emsp = SandboxEmsp()
    await emsp.start()
    client = OcpiClient(OURS)
    holder: list[OcpiServer] = []
    partners = [
        PartnerSettings("out", emsp.versions_url, "bench-token-a", 10.0),
        PartnerSettings("in", None, None, 10.0),
    ]
    registrar = Registrar(
        store, client, Identity(OURS, "Bench CPO", lambda: holder[0].base_url), partners
    )
    server = OcpiServer(registrar, host="127.0.0.1", port=0, base_url="", ours=OURS)
    holder.append(server)
    await server.start()
    try:
        outbound: list[float] = []
        for _ in range(rounds):
            emsp.token_a, emsp.registration = "bench-token-a", None
            await store.save_link(PartnerLink("out", LinkState.UNREGISTERED))
            started = time.perf_counter()
            await registrar.register("out")
            outbound.append(time.perf_counter() - started)
        inbound: list[float] = []
        versions = server.base_url + "/versions"
        for _ in range(rounds):
            token_a = await registrar.issue_token_a("in")
            started = time.perf_counter()
            await emsp.register_with(versions, token_a)
            inbound.append(time.perf_counter() - started)
            await emsp.unregister()
        token_a = await registrar.issue_token_a("in")
        reg = await emsp.register_with(versions, token_a)
        latencies = await _gets(server.base_url + "/2.2.1/credentials", reg.token_theirs, requests)
    finally:
        await server.close()
        await client.close()
        await emsp.stop()
        await db.close()
    for what, values in (
        ("we register (GET x4, POST)", outbound),
        ("it registers (GET x4, POST)", inbound),
    ):
        table.add(what, len(values), ms(percentile(values, 50)), ms(percentile(values, 99)), "-")
    wall, each = latencies
    table.add(
        "GET credentials, 10 at a time",
        len(each),
        ms(percentile(each, 50)),
        ms(percentile(each, 99)),
        num(len(each) / wall, 0),
    )
    table.notes.append(
        "handshakes include both sides' work (the sandbox's too) and their SQLite commits"
    )
    return table


async def _gets(url: str, token: str, n: int) -> tuple[float, list[float]]:
    headers = {"Authorization": encode_token(token)}
    each: list[float] = []
    queue = list(range(n))
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            while queue:
                queue.pop()
                started = time.perf_counter()
                async with http.get(url, headers=headers) as r:
                    await r.read()
                    assert r.status == 200
                each.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(10)))
        return time.perf_counter() - started, each
