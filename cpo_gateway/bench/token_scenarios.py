"""Benchmark `ocpi-tokens`: an eMSP's full token list pulled over loopback into a gateway,
then Authorize answered from it.

The simulated tokens sender (sim/ocpi_emsp/tokens.py) runs in the bench process; the gateway and
the puller run in a worker process of their own (`python -m cpo_gateway.bench.token_scenarios
WORKDIR URL COUNT`), so its peak RSS is the gateway's alone. The worker prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bench.servers import OUTBOUND_KEY, charger_ids, write_gateway_config
from cpo_gateway.sim.ocpi_emsp.tokens import TokenSender, generated_uid

TOKEN_C = "bench-token-c-0001"  # noqa: S105 - a loopback benchmark peer's token
PARTY = ("DE", "EMS")
LOOKUPS = 2_000
CHARGER_AUTHORIZES = 300
MAX_PUSHED = 100_000  # above: the bench charger's local list is switched off


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:  # noqa: PTH123 - a proc file, read once
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


async def ocpi_tokens(ctx: Context, sizes: tuple[int, ...]) -> Table:
    table = Table(
        "OCPI tokens: full list pulled over loopback (1,000 per page), then Authorize",
        (
            "tokens",
            "pull s",
            "tokens/s",
            "RSS before MB",
            "peak RSS MB",
            "DB MB",
            "lookup p50 ms",
            "lookup p99 ms",
            "Authorize p50 ms",
            "Authorize p99 ms",
            "list push s",
        ),
    )
    for size in sizes:
        directory = ctx.directory(f"ocpi-tokens-{size}")
        async with TokenSender(TOKEN_C, country_code=PARTY[0], party_id=PARTY[1], count=size) as s:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cpo_gateway.bench.token_scenarios",
                str(directory),
                s.url,
                str(size),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed: {err.decode()[-600:]}")
        r: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        table.add(
            f"{r['total']:,}",
            num(r["pull_s"], 1),
            f"{r['total'] / r['pull_s']:,.0f}",
            num(r["rss_before_mb"]),
            num(r["peak_rss_mb"]),
            num(r["db_mb"]),
            ms(r["lookup_p50_s"]),
            ms(r["lookup_p99_s"]),
            ms(r["authorize_p50_s"]),
            ms(r["authorize_p99_s"]),
            num(r["push_s"], 1),
        )
    table.notes.append(
        "pull s: first GET to the list in force (parse, stage one page per commit while the "
        "next is fetched, swap); peak RSS: the gateway process's whole life"
    )
    table.notes.append(
        f"lookup: the core's chain for {LOOKUPS} random listed cards, each once (not cached); "
        f"Authorize: {CHARGER_AUTHORIZES} from a simulated 1.6 charger over the websocket, "
        "after its boot's local-list push (list push s: boot to the charger holding the list; "
        f"above {MAX_PUSHED:,} tokens the charger's local list is off and nothing is pushed)"
    )
    return table


# --- the worker ---------------------------------------------------------------------------------
async def _worker(directory: Path, url: str, count: int) -> dict[str, Any]:
    from cpo_gateway import logs
    from cpo_gateway.app import Gateway
    from cpo_gateway.config import load_config
    from cpo_gateway.ocpi.client import OcpiClient
    from cpo_gateway.ocpi.token_pull import TokenPuller
    from cpo_gateway.ocpi.transport import Party
    from cpo_gateway.sim.charger.simulator import SimCharger

    logs.configure("warning", "json")
    path = write_gateway_config(directory, 1, "http://127.0.0.1:9/none", 0, 0)
    with path.open("a", encoding="utf-8") as f:
        f.write(
            f'\n[[emp]]\nname = "emsp"\nurl = "http://127.0.0.1:9/none"\n'
            f'api_key = "{OUTBOUND_KEY}"\ninbound_api_key = "emsp-inbound-key-0001"\n'
            'partner_identifier = "emsp-partner-0001"\n'
        )
    gateway = Gateway(load_config(path, {}))
    await gateway.start()
    client = OcpiClient()
    try:
        rss_before = _rss_mb()
        puller = TokenPuller(client, gateway.core.tokens)
        started = time.perf_counter()
        result = await puller.pull("emsp", url, TOKEN_C, frozenset({Party(*PARTY)}))
        pull_s = time.perf_counter() - started
        peak = _peak_rss_mb()
        rng = random.Random(1)  # noqa: S311 - a benchmark's sample, not a secret
        lookups = []
        cp = charger_ids(1)[0]
        for i in rng.sample(range(count), min(LOOKUPS, count)):
            t0 = time.perf_counter()
            decision = await gateway.core.authorize(cp, generated_uid(i))
            lookups.append(time.perf_counter() - t0)
            assert decision.status.value == "Accepted", decision
        authorizes = []
        ocpp_url = f"ws://127.0.0.1:{gateway.csms.port}{gateway.config.ocpp.path}"
        push_s = math.nan
        async with SimCharger(cp, ocpp_url, call_timeout=10) as charger:
            if count > MAX_PUSHED:  # a list this long is not pushed: the charger's is off
                charger.state.change_configuration("LocalAuthListEnabled", "false")
            await charger.connect()
            t0 = time.perf_counter()
            await charger.boot()
            if count <= MAX_PUSHED:
                # The boot brings the charger's local list up to date (the whole list, in
                # chunks): measured apart, so Authorize is timed on a charger at rest.
                version = await gateway.store.whitelist_version()
                for _ in range(3000):  # bounded: 300 s
                    if (await gateway.store.local_list_record(cp)).version >= version:
                        break
                    await asyncio.sleep(0.1)
                push_s = time.perf_counter() - t0
            for i in rng.sample(range(count), min(CHARGER_AUTHORIZES, count)):
                t0 = time.perf_counter()
                status = await charger.authorize(generated_uid(i))
                authorizes.append(time.perf_counter() - t0)
                assert status == "Accepted", status
        db = gateway.config.gateway.database
        db_mb = sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file()) / 1e6
    finally:
        await client.close()
        await gateway.stop()
    return {
        "total": result.total,
        "pages": result.pages,
        "pull_s": pull_s,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "db_mb": db_mb,
        "lookup_p50_s": percentile(lookups, 50),
        "lookup_p99_s": percentile(lookups, 99),
        "authorize_p50_s": percentile(authorizes, 50),
        "authorize_p99_s": percentile(authorizes, 99),
        "push_s": push_s,
    }


if __name__ == "__main__":
    figures = asyncio.run(_worker(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
    print(json.dumps(figures), flush=True)
