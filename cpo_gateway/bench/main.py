"""`scripts/bench`: the gateway against the baseline central system, on this machine.

Every scenario starts its own server processes (gateway, baseline) and load processes, so one
scenario's leftovers never weigh on the next. Prints one table per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from cpo_gateway import logs
from cpo_gateway.bench import (
    claims_scenarios,
    cluster_load,
    cluster_scenarios,
    emp_scenarios,
    ocpi_command_scenarios,
    ocpi_scenarios,
    ocpp_scenarios,
    schema_scenarios,
    storage_scenarios,
    tls_flood,
    tls_scenarios,
    token_scenarios,
    upgrade_scenarios,
)
from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table

SCENARIOS = (
    "mixed",
    "mixed201",
    "idle10k",
    "burst",
    "storm",
    "authorize",
    "rfid",
    "session-start",
    "outbox",
    "outbox-claims",
    "schemas",
    "profile3",
    "tls-flood",
    "ocpi-registration",
    "ocpi-tokens",
    "ocpi-start",
    "upgrade",
    "cluster-commands",
    "storage",
    "cluster",
)
# Sockets per process at the sizes: 10,000 chargers, plus files and listeners.
NEEDED_FDS = 10_500


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def scaled(n: int, fds: int) -> int:
    """The charger count the open-files limit allows (each charger is one socket)."""
    return max(10, min(n, fds - 500))


def plan(
    args: argparse.Namespace, fds: int
) -> list[tuple[str, Callable[[Context], Awaitable[Table]]]]:
    quick = args.quick
    s = args.seconds
    n = args.chargers
    idle_n = scaled(n or (50 if quick else 10_000), fds)
    crowd_n = scaled(n or (50 if quick else 5_000), fds)
    steps: dict[str, Callable[[Context], Awaitable[Table]]] = {
        "mixed": lambda c: ocpp_scenarios.mixed(
            c, n or (5 if quick else 100), s or (2 if quick else 20)
        ),
        "mixed201": lambda c: ocpp_scenarios.mixed201(
            c, n or (5 if quick else 100), s or (2 if quick else 20)
        ),
        "idle10k": lambda c: ocpp_scenarios.idle(
            c, idle_n, s or (3 if quick else 30), 1 if quick else 10
        ),
        "burst": lambda c: ocpp_scenarios.burst(c, crowd_n),
        "storm": lambda c: ocpp_scenarios.storm(c, crowd_n, 1 if quick else 10),
        "authorize": lambda c: ocpp_scenarios.authorize(
            c, n or (5 if quick else 50), 50 if quick else 1000, s or (2 if quick else 10)
        ),
        "rfid": lambda c: emp_scenarios.rfid(c, (1_000, 10_000) if quick else (100_000, 1_000_000)),
        "session-start": lambda c: emp_scenarios.session_start(c, 10 if quick else 200),
        "outbox": lambda c: emp_scenarios.outbox(c, 200 if quick else 5_000),
        # N claimers (nodes) draining one outbox on PostgreSQL: rows/s and duplicates (0).
        "outbox-claims": lambda c: claims_scenarios.outbox_claims(
            c, n or (2_000 if quick else 20_000), (1, 4) if quick else (1, 2, 4, 8), args.pg_url
        ),
        # The 1.6 mixed load with the schema check off and on, alternating, and the validators.
        "schemas": lambda c: schema_scenarios.schemas(
            c, n or (5 if quick else 100), s or (2 if quick else 20), 1 if quick else 4
        ),
        "profile3": lambda c: tls_scenarios.profile3(c, scaled(n or (50 if quick else 1_000), fds)),
        # Silent sockets on the TLS port (no ClientHello) while profile-2 chargers connect.
        "tls-flood": lambda c: tls_flood.tls_flood(
            c, scaled(200 if quick else 2_000, fds // 2), n or (10 if quick else 100)
        ),
        "ocpi-registration": lambda c: ocpi_scenarios.registration(
            c, 5 if quick else 50, 200 if quick else 5_000
        ),
        "ocpi-tokens": lambda c: token_scenarios.ocpi_tokens(
            c, (n or 10_000,) if quick else (n or 1_000_000,)
        ),
        "ocpi-start": lambda c: ocpi_command_scenarios.ocpi_start(
            c, 20 if quick else 200, 500 if quick else 5_000
        ),
        # As many chargers as one HAProxy's open files allow, at most (see cluster_load.py).
        "cluster": lambda c: cluster_load.cluster(
            c,
            min(n or (30 if quick else 1_000), cluster_load.max_chargers(fds)),
            fds=fds,
            mixed_n=5 if quick else 20,
            mixed_s=s or (3 if quick else 20),
            heartbeat_s=2 if quick else 10,
            spread_s=1 if quick else 5,
            recovery_s=10 if quick else 40,
        ),
        "storage": lambda c: storage_scenarios.storage(
            c, n or (5 if quick else 100), s or (2 if quick else 20)
        ),
        "upgrade": lambda c: upgrade_scenarios.upgrade(
            c, (1_000,) if quick else (10_000, 100_000, 1_000_000)
        ),
        # Needs CPO_GATEWAY_BENCH_PG_URL (a PostgreSQL database): see cluster_scenarios.py.
        "cluster-commands": lambda c: cluster_scenarios.cluster_commands(
            c, n or (5 if quick else 50), 20 if quick else 100
        ),
    }
    chosen: tuple[str, ...] = SCENARIOS if args.scenario == "all" else (args.scenario,)
    if args.scenario == "all" and not os.environ.get(cluster_scenarios.URL_ENV):
        chosen = tuple(c for c in chosen if c != "cluster-commands")  # it needs a database
    return [(name, steps[name]) for name in chosen]


def machine() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except OSError:
        commit = "?"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}  {platform.node()}  {os.cpu_count()} CPUs  "
        f"Python {platform.python_version()}  {platform.system()} {platform.release()}  "
        f"commit {commit or '?'}"
    )


async def run(args: argparse.Namespace) -> int:
    fds = raise_fd_limit()
    logs.configure("warning", "json")  # the store's own start-up events would clutter the tables
    print(f"# cpo-gateway benchmark  {machine()}", flush=True)
    if fds < NEEDED_FDS:
        print(f"# open-files limit {fds} < {NEEDED_FDS}: charger counts scaled down to fit")
    with tempfile.TemporaryDirectory(prefix="cpo-bench-") as tmp:
        ctx = Context(Path(args.workdir or tmp), workers=args.workers)
        failures = 0
        for name, step in plan(args, fds):
            started = time.monotonic()
            try:
                table = await step(ctx)
            except Exception as exc:  # one broken scenario must not hide the others' figures
                failures += 1
                print(f"== {name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            table.notes.append(f"scenario time {time.monotonic() - started:.0f} s")
            print(table.render(), flush=True)
            print(flush=True)
    return 1 if failures else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=("all", *SCENARIOS), default="all")
    p.add_argument("--chargers", type=int, default=0, help="override the scenario's size")
    p.add_argument("--seconds", type=float, default=0.0, help="override the measured window")
    p.add_argument("--quick", action="store_true", help="small sizes, a few seconds each")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="load generator processes (default: one per core)",
    )
    p.add_argument("--workdir", help="keep configs, databases and server logs here")
    p.add_argument(
        "--pg-url",
        help="PostgreSQL server for outbox-claims (a user with CREATEDB: each run makes and "
        "drops its own database); default: a throwaway server from Debian's packages",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
