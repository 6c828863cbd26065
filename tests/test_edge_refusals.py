"""Every handshake refused before the upgrade leaves a trace: a log line once per charger
and reason per interval, and a /metrics counter by reason."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cpo_gateway.csms.refusals import Refusal, Refusals
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.test_csms_support import CP, config, running


async def _status(url: str, subprotocols: list[str]) -> int:
    try:
        offered = [Subprotocol(p) for p in subprotocols]
        async with connect(url, subprotocols=offered, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)


async def test_refused_chargers_are_logged_once_and_counted(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    with structlog.testing.capture_logs() as events:
        async with running(config(tmp_path, emp), emp) as h:
            for _ in range(5):
                assert await _status(f"{h.ocpp_url}/{CP}", ["ocpp2.0"]) == 400
            assert await _status(f"{h.ocpp_url}/CP-NOBODY-01", ["ocpp1.6"]) == 404
            assert await _status(h.ocpp_url.rsplit("/", 1)[0] + "/elsewhere/x", ["ocpp1.6"]) == 404
            async with aiohttp.ClientSession() as http, http.get(h.base_url + "/metrics") as resp:
                metrics = await resp.text()
    assert 'cpo_gateway_ocpp_refused_total{reason="subprotocol"} 5.0' in metrics
    assert 'cpo_gateway_ocpp_refused_total{reason="unknown_id"} 1.0' in metrics
    assert 'cpo_gateway_ocpp_refused_total{reason="bad_path"} 1.0' in metrics
    said = [e for e in events if e["event"] == "charger.refused_subprotocol"]
    assert len(said) == 1
    assert said[0]["charge_point_id"] == CP and said[0]["offered"] == "ocpp2.0"
    assert said[0]["source"] == "127.0.0.1" and said[0]["log_level"] == "warning"
    assert [e["event"] for e in events if e.get("refused") == "bad_path"] == [
        "charger.refused_path"
    ]


def test_refusals_are_logged_once_per_interval_in_bounded_memory() -> None:
    now = [0.0]
    refusals = Refusals(interval_s=60.0, max_keys=50, clock=lambda: now[0])
    with structlog.testing.capture_logs() as events:
        for _ in range(10):
            refusals.refuse(Refusal.SUBPROTOCOL, "CP-1", charge_point_id="CP-1")
        now[0] = 61.0
        refusals.refuse(Refusal.SUBPROTOCOL, "CP-1", charge_point_id="CP-1")
        for i in range(1000):  # a spray of made-up ids
            refusals.refuse(Refusal.UNKNOWN_ID, f"CP-{i}", charge_point_id=f"CP-{i}")
    first = [e for e in events if e["event"] == "charger.refused_subprotocol"]
    assert [e["suppressed"] for e in first] == [0, 9]
    assert len(refusals) <= 50
    assert refusals.counts[Refusal.SUBPROTOCOL] == 11
    assert refusals.counts[Refusal.UNKNOWN_ID] == 1000
