"""The Grafana dashboard in config/ asks only for metrics a running gateway exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.runtime import Collector
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import ROOT, running_gateway, write_config

DASHBOARD = ROOT / "config" / "grafana-dashboard.json"
# Our names and the process collector's; PromQL functions and labels match neither.
METRIC = re.compile(r"\b(?:cpo_gateway|process)_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def expressions(dashboard: dict[str, object]) -> list[str]:
    """Every PromQL text: the panels' targets and the template variables' queries."""
    panels = dashboard["panels"]
    templating = dashboard["templating"]
    assert isinstance(panels, list) and isinstance(templating, dict)
    found = [t["expr"] for p in panels for t in p["targets"]]
    found += [v["query"] for v in templating["list"] if v["type"] == "query"]
    return found


def unknown_names(exprs: list[str], exposed: set[str]) -> dict[str, set[str]]:
    """The expressions naming a metric outside `exposed`, with those names."""
    bad = {e: set(METRIC.findall(e)) - exposed for e in exprs}
    return {e: names for e, names in bad.items() if names}


def exposed_names(text: str) -> set[str]:
    """Every series name the text exposes, including those of families without samples yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


async def test_every_dashboard_expression_names_metrics_the_gateway_exposes(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = expressions(dashboard)
    assert len(exprs) >= 14
    cfg = load_config(write_config(tmp_path, emp_url=emp.url), {})
    # The gc pacing figures exist when the gateway paces collections (as its own process does).
    gateway = Gateway(cfg, collector=Collector(check_s=3600.0))
    async with running_gateway(gateway, emp) as h:
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            await cp.heartbeat()
        async with aiohttp.ClientSession() as http, http.get(h.base_url + "/metrics") as resp:
            text = await resp.text()
    exposed = exposed_names(text)
    assert "cpo_gateway_ocpp_call_seconds_bucket" in exposed
    assert unknown_names(exprs, exposed) == {}
    wanted = {
        "cpo_gateway_chargers_connected",
        "cpo_gateway_ocpp_call_seconds_bucket",
        "cpo_gateway_ocpp_refused_total",
        "cpo_gateway_outbox_depth",
        "cpo_gateway_outbox_oldest_age_seconds",
        "cpo_gateway_deliveries_total",
        "cpo_gateway_emp_request_seconds_bucket",
        "cpo_gateway_sessions_needing_review",
        "cpo_gateway_gc_pause_seconds",
    }
    assert wanted <= {name for e in exprs for name in METRIC.findall(e)}


def test_the_check_catches_a_misspelt_metric() -> None:
    exposed = {"cpo_gateway_outbox_depth", "process_cpu_seconds_total"}
    exprs = [
        'sum by (emp) (cpo_gateway_outbox_depth{state="pending"})',
        "rate(process_cpu_seconds_total[5m])",
        "histogram_quantile(0.99, rate(cpo_gateway_ocpp_latency_bucket[5m]))",
    ]
    assert unknown_names(exprs, exposed) == {exprs[2]: {"cpo_gateway_ocpp_latency_bucket"}}
