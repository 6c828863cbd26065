"""Benchmark scenario of security profile 3: chargers connecting with client certificates.

Every charger has `security_profile = 3` and its own certificate (CN = its id, O = the
CPO), made once per run and kept in the run's directory. The figure is the wall time from
the first TLS connect to the last 101 (all handshakes complete, every check of
clientcert.py done), with at most `in_flight` handshakes open at once, as a charger fleet
reconnecting after an outage would do. The chargers are split over `ctx.workers` load
processes (`python -m cpo_gateway.bench.tls_scenarios`, one JSON line of results each);
their TLS work shares the machine with the gateway, so the figure errs on the slow side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bench.servers import OCPP_PATH, OUTBOUND_KEY, ServerProcess, charger_ids
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import DEFAULT_ORG, SimPki

TARGET_S = 10.0


def client_context(pki_dir: Path, cp_id: str) -> ssl.SSLContext:
    """A charger's context: trusts the run's CA, presents its own certificate."""
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    ctx.load_cert_chain(pki_dir / f"client-{cp_id}.pem", pki_dir / f"client-{cp_id}.key")
    return ctx


async def _connect(
    url: str, ctx: ssl.SSLContext, gate: asyncio.Semaphore, open_: list[ClientConnection]
) -> tuple[float, str]:
    async with gate:
        started = time.perf_counter()
        try:
            ws = await connect(url, subprotocols=[Subprotocol("ocpp1.6")], ssl=ctx, open_timeout=60)
        except InvalidStatus as exc:
            return time.perf_counter() - started, f"HTTP {exc.response.status_code}"
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            return time.perf_counter() - started, type(exc).__name__
        open_.append(ws)
        return time.perf_counter() - started, ""


async def profile3(ctx: Context, n: int = 1_000, in_flight: int = 100) -> Table:
    table = Table(
        f"profile 3: {n} chargers connect with client certificates, {in_flight} at a time",
        (
            "system",
            "chargers",
            "accepted",
            "refused",
            "wall s",
            "handshakes/s",
            "p50 ms",
            "p99 ms",
            "server CPU s",
            "peak RSS MB",
        ),
    )
    directory = ctx.directory("profile3-gateway")
    made = time.monotonic()
    pki = SimPki(directory / "pki", DEFAULT_ORG)
    ids = charger_ids(n)
    for cp_id in ids:
        pki.client(cp_id)
    made_s = time.monotonic() - made
    tls = (
        f'cert_file = "{pki.server.cert}"\nkey_file = "{pki.server.key}"\n'
        f'client_ca_file = "{pki.ca.cert}"\norganization = "{DEFAULT_ORG}"\n'
    )
    emp = SandboxEmp(api_key=OUTBOUND_KEY)
    await emp.start()
    server = ServerProcess.gateway(directory, n, emp.url, security_profile=3, tls=tls)
    try:
        await server.start()
        before = server.usage()
        base = f"wss://127.0.0.1:{server.port}{OCPP_PATH}"
        workers = max(1, min(ctx.workers, n))
        start_at = time.time() + 3.0 + n / 500  # every worker has built its contexts by then
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cpo_gateway.bench.tls_scenarios",
                "--url",
                base,
                "--pki",
                str(pki.directory),
                "--ids",
                ",".join(ids[w::workers]),
                "--in-flight",
                str(max(1, in_flight // workers)),
                "--start-at",
                str(start_at),
                stdout=asyncio.subprocess.PIPE,
            )
            for w in range(workers)
        ]
        outputs = await asyncio.gather(*(p.communicate() for p in procs))
        after = server.usage()
    finally:
        await server.stop()
        await emp.stop()
    results: list[tuple[float, str]] = []
    first, last = float("inf"), 0.0
    for out, _ in outputs:
        report = json.loads(out.decode().strip().splitlines()[-1])
        results += [(float(t), str(e)) for t, e in report["results"]]
        first, last = min(first, report["first"]), max(last, report["last"])
    wall = last - first
    latencies = [t for t, error in results if not error]
    errors = sorted({e for _, e in results if e})
    table.add(
        "gateway",
        n,
        len(latencies),
        n - len(latencies),
        num(wall, 2),
        num(len(latencies) / wall if wall else 0.0, 0),
        ms(percentile(latencies, 50)),
        ms(percentile(latencies, 99)),
        num(after.cpu_s - before.cpu_s, 2),
        num(after.peak_rss_mb),
    )
    table.notes.append(f"target: all {n} accepted within {TARGET_S:g} s")
    table.notes.append(f"{n} client certificates made in {made_s:.1f} s (not in the figure)")
    if errors:
        table.notes.append("refusals: " + ", ".join(errors))
    return table


async def _worker(args: argparse.Namespace) -> None:
    pki_dir = Path(args.pki)
    ids = [i for i in args.ids.split(",") if i]
    contexts = [client_context(pki_dir, cp_id) for cp_id in ids]
    opened: list[ClientConnection] = []
    gate = asyncio.Semaphore(args.in_flight)
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    first = time.time()
    results = await asyncio.gather(
        *(
            _connect(f"{args.url}/{cp}", c, gate, opened)
            for cp, c in zip(ids, contexts, strict=True)
        )
    )
    last = time.time()
    await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    print(json.dumps({"first": first, "last": last, "results": results}), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="one load process of the profile-3 scenario")
    p.add_argument("--url", required=True)
    p.add_argument("--pki", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--in-flight", type=int, default=50)
    p.add_argument("--start-at", type=float, default=0.0)
    asyncio.run(_worker(p.parse_args(argv)))


if __name__ == "__main__":
    main()
