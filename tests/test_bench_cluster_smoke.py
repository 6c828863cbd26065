"""The storage and cluster benchmarks and the cluster crash soak keep working: tiny sizes, on a
throwaway PostgreSQL and a real HAProxy of their own. Figures are printed, never asserted;
what is asserted is what the scenarios promise: no errors, everyone back, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpo_gateway.bench.cluster_load import NODES, measure
from cpo_gateway.bench.haproxy import haproxy_binary
from cpo_gateway.bench.main import parser
from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.pg_server import find_bindir
from cpo_gateway.bench.soak.crash import run_crash
from cpo_gateway.bench.storage_scenarios import COLUMNS, storage

needs_postgres = pytest.mark.skipif(
    find_bindir() is None, reason="PostgreSQL is not installed: run scripts/services-setup"
)
needs_haproxy = pytest.mark.skipif(
    haproxy_binary() is None, reason="haproxy is not installed: run scripts/services-setup"
)


def test_cli_knows_the_storage_and_cluster_scenarios() -> None:
    for name in ("storage", "cluster"):
        assert parser().parse_args(["--scenario", name, "--quick"]).scenario == name


@needs_postgres
async def test_storage_smoke_runs_the_mixed_load_on_both_backends(tmp_path: Path) -> None:
    table = await storage(Context(tmp_path, workers=1), n=3, seconds=1.5)
    print(table.render())
    assert table.columns == COLUMNS
    rows = {row[0]: dict(zip(table.columns, row, strict=True)) for row in table.rows}
    assert list(rows) == ["sqlite", "postgresql", "postgresql/sqlite"], table.render()
    for backend in ("sqlite", "postgresql"):
        assert int(rows[backend]["calls"]) > 0, table.render()
        assert rows[backend]["errors"] == "0", table.render()
    # The database server worked for the PostgreSQL run, and its CPU is counted.
    assert float(rows["postgresql"]["db CPU s"]) > 0, table.render()
    assert rows["sqlite"]["db CPU s"] == "-"
    assert rows["postgresql/sqlite"]["calls/s"].endswith("x")
    # Each run stored where it was told: a SQLite file for one, none for the other.
    gateways = sorted(tmp_path.glob("*-mixed-gateway"))
    assert [(d / "state" / "gateway.db").exists() for d in gateways] == [True, False]


@needs_postgres
@needs_haproxy
async def test_cluster_smoke_a_killed_nodes_chargers_come_back_and_no_cdr_is_lost(
    tmp_path: Path,
) -> None:
    n = 12
    f = await measure(Context(tmp_path, workers=1), n, mixed_n=3, mixed_s=2.0,
                      heartbeat_s=1.0, spread_s=0.5, recovery_s=5.0)  # fmt: skip
    print(f.placed, f.placed_after, f.dropped, f.back_s, f.cdrs, f.outbox_left)
    assert f.connected == n and f.open_at_kill == n
    assert f.mixed.answered > 0 and f.mixed.errors == {}
    assert len(f.placed) >= 2 and sum(f.placed.values()) == n, "HAProxy spreads the chargers"
    held = f.placed[f.victim]
    assert f.dropped == held > 0 and len(f.back_s) == held, "the victim's chargers came back"
    assert f.victim not in f.placed_after and sum(f.placed_after.values()) == n
    assert len(f.placed_after) == NODES - 1
    assert f.idle.stopped == n and f.lost == 0, f.cdrs
    assert sorted(f.cdrs.values()) == [1] * n, "exactly one CDR per session"
    assert f.outbox_left == {}


@needs_postgres
@needs_haproxy
async def test_crash_soak_smoke_against_a_cluster(tmp_path: Path) -> None:
    report = await run_crash(tmp_path, sessions=12, chargers=4, seed=3, nodes=3,
                             kill_every_s=(0.2, 0.6), pause_s=0.5, time_limit_s=120)  # fmt: skip
    print("\n".join(report.lines()))
    assert report.nodes == 3 and report.kills >= 1
    assert report.acknowledged == 12 and report.cdrs == 12 and report.missing == []
    assert report.outbox_left == 0 and report.exit_code == 0
    assert report.ok
