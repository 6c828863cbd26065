"""A connection that replaces a connected charger's socket is a security event, counted in
/metrics; check-config names the chargers anyone could take over (profile 0, no password)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import structlog

from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import write_config
from tests.test_csms_support import CP, RawCharger, config, eventually, running


async def test_a_takeover_is_a_security_event_with_both_addresses(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    with structlog.testing.capture_logs() as events:
        async with (
            running(config(tmp_path, emp), emp) as h,
            RawCharger.open(h.ocpp_url) as real,
            RawCharger.open(h.ocpp_url, local_addr=("127.0.0.2", 0)),
        ):
            await eventually(lambda: real.ws.close_code is not None)
            async with aiohttp.ClientSession() as http, http.get(h.base_url + "/metrics") as resp:
                metrics = await resp.text()
    taken = [e for e in events if e["event"] == "security.charger_takeover"]
    assert len(taken) == 1, taken
    assert (taken[0]["charge_point_id"], taken[0]["old_source"], taken[0]["new_source"]) == (
        CP,
        "127.0.0.1",
        "127.0.0.2",
    )
    assert taken[0]["log_level"] == "warning" and taken[0]["security_profile"] == 0
    assert "cpo_gateway_ocpp_takeovers_total 1.0" in metrics


def test_check_config_warns_about_chargers_on_profile_0(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "security profile 0" in line]
    assert len(warnings) == 1, done.stderr
    assert "CP-BER-001" in warnings[0] and "CP-HH-001" in warnings[0]
