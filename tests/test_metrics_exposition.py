"""/metrics scraped from running gateways (real servers on port 0) and parsed as Prometheus
does: each metric moves when the thing it counts happens, and every gateway has its own
registry."""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Callable
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from cpo_gateway import __version__
from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.metrics import OUTBOX_STATES
from cpo_gateway.oioi.client import CALLS
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import Harness, running_gateway, write_config

CP = "CP-BER-001"
Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def _key(name: str, **labels: str) -> tuple[str, Labels]:
    return name, frozenset(labels.items())


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(h: Harness) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(h.base_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(await resp.text())


async def scrape_until(h: Harness, done: Callable[[Samples], bool]) -> Samples:
    """Scrape until `done` holds (what is counted right after an answer was sent may land
    a moment after the peer has it); at most 100 tries."""
    for _ in range(100):
        samples = await scrape(h)
        if done(samples):
            return samples
        await asyncio.sleep(0.05)
    return samples


async def test_build_info_carries_the_version_and_python(harness: Harness) -> None:
    samples = await scrape(harness)
    assert (
        samples[
            _key("cpo_gateway_build_info", version=__version__, python=platform.python_version())
        ]
        == 1
    )
    assert samples[_key("process_resident_memory_bytes")] > 0
    assert _key("process_cpu_seconds_total") in samples


async def test_outbox_gauges_read_zero_for_every_emp_kind_and_state_when_empty(
    harness: Harness,
) -> None:
    assert harness.gateway.core is not None
    await harness.gateway.core.delivery.tick()  # the first start's station-posts
    samples = await scrape(harness)
    for kind in CALLS.values():  # an OIOI EMP's figures are labelled by its calls
        for state in OUTBOX_STATES:
            labels = {"emp": "sandbox", "kind": kind, "state": state}
            assert samples[_key("cpo_gateway_outbox_depth", **labels)] == 0, labels
            assert samples[_key("cpo_gateway_outbox_oldest_age_seconds", **labels)] == 0, labels


async def test_a_delivery_counts_its_result_and_the_emp_request_latency(harness: Harness) -> None:
    assert harness.gateway.core is not None
    before = await scrape(harness)
    delivered = _key(
        "cpo_gateway_deliveries_total", emp="sandbox", kind="station-post", result="delivered"
    )
    requests = _key("cpo_gateway_emp_request_seconds_count", emp="sandbox", kind="station-post")
    pending = _key("cpo_gateway_outbox_depth", emp="sandbox", kind="station-post", state="pending")
    assert (before[delivered], before[requests], before[pending]) == (0, 0, 3)
    # This tick or the outbox job's own (every tick_s) delivers them: either way, each once.
    await harness.gateway.core.delivery.tick()
    after = await scrape_until(harness, lambda s: s[delivered] >= 3)
    assert (after[delivered], after[requests], after[pending]) == (3, 3, 0)
    assert (
        after[_key("cpo_gateway_emp_request_seconds_sum", emp="sandbox", kind="station-post")] > 0
    )


async def test_an_online_verify_observes_the_rfid_verify_latency(harness: Harness) -> None:
    verify = _key("cpo_gateway_emp_request_seconds_count", emp="sandbox", kind="rfid-verify")
    assert (await scrape(harness))[verify] == 0
    async with harness.charger(CP) as cp:
        await cp.connect()
        await cp.authorize("0A1B2C3D")  # in no whitelist: the EMP is asked
    samples = await scrape_until(harness, lambda s: s[verify] >= 1)
    assert samples[verify] == 1
    online = [
        value
        for (name, labels), value in samples.items()
        if name == "cpo_gateway_authorizations_total" and ("path", "online") in labels
    ]
    assert sum(online) == 1


async def test_a_charger_call_observes_the_ocpp_latency_of_its_action(harness: Harness) -> None:
    count = _key("cpo_gateway_ocpp_call_seconds_count", action="Heartbeat")
    fast = _key("cpo_gateway_ocpp_call_seconds_bucket", action="Heartbeat", le="+Inf")
    async with harness.charger(CP) as cp:
        await cp.connect()
        for _ in range(3):
            await cp.heartbeat()
        samples = await scrape_until(harness, lambda s: s.get(count, 0) >= 3)
    assert samples[count] == samples[fast] == 3
    assert samples[_key("cpo_gateway_ocpp_messages_total", action="Heartbeat")] == 3
    assert samples[_key("cpo_gateway_ocpp_call_seconds_count", action="BootNotification")] == 1
    assert samples[_key("cpo_gateway_chargers_connected")] == 1


async def test_a_command_to_a_charger_counts_its_action_and_result(harness: Harness) -> None:
    csms = harness.gateway.csms
    assert csms is not None
    accepted = _key(
        "cpo_gateway_charger_commands_total", action="TriggerMessage", result="accepted"
    )
    offline = _key("cpo_gateway_charger_commands_total", action="Reset", result="offline")
    timed = _key("cpo_gateway_charger_command_seconds_count", action="TriggerMessage")
    async with harness.charger(CP) as cp:
        await cp.connect()
        before = await scrape(harness)
        result = await csms.registry.trigger_status(CP, 1)
        assert result.accepted
    gone = await csms.registry.reset("CP-NOT-CONNECTED")
    assert gone.status.value == "offline"
    after = await scrape(harness)
    assert after[accepted] - before.get(accepted, 0) == 1
    assert after[timed] - before.get(timed, 0) == 1
    assert after[offline] == 1


async def test_two_gateways_in_one_process_each_have_their_own_registry(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    gateways = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        cfg = load_config(write_config(tmp_path / name, emp_url=emp.url), {})
        gateways.append(Gateway(cfg))  # a second registry must not clash with the first
    one, two = gateways
    assert one.exposition.registry is not two.exposition.registry
    beats = _key("cpo_gateway_ocpp_call_seconds_count", action="Heartbeat")
    async with (
        running_gateway(one, emp) as h1,
        running_gateway(two, emp) as h2,
        h1.charger(CP) as cp,
    ):
        await cp.connect()
        for _ in range(2):
            await cp.heartbeat()
        first = await scrape_until(h1, lambda s: s.get(beats, 0) >= 2)
        second = await scrape(h2)
    assert first[beats] == 2
    assert first[_key("cpo_gateway_chargers_connected")] == 1
    assert second.get(beats, 0) == 0
    assert _key("cpo_gateway_ocpp_messages_total", action="Heartbeat") not in second
    assert second[_key("cpo_gateway_chargers_connected")] == 0
