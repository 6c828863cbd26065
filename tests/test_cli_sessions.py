"""`cpo-gateway sessions list` shows sessions, including CDRs kept locally, and the
optional first session-post at session start (cdr_on_start)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import write_config


async def test_sessions_list_and_cdr_on_start(tmp_path: Path, emp: SandboxEmp) -> None:
    config_path = write_config(tmp_path, emp_url=emp.url, sessions="cdr_on_start = true")
    gateway = Gateway(load_config(config_path, {}))
    await gateway.start()
    assert gateway.csms is not None
    url = f"ws://127.0.0.1:{gateway.csms.port}/ocpp"
    try:
        assert gateway.core is not None
        await gateway.core.set_whitelist("sandbox", ["AABBCCDD"])
        async with SimCharger("CP-HH-001", url, call_timeout=10) as cp:
            await cp.connect()
            card = await cp.start_transaction(
                1, "AABBCCDD", meter_start=0, timestamp=datetime.now(UTC) - timedelta(hours=1)
            )
            # The first session-post has no stop time yet.
            await emp.wait_for(lambda: len(emp.calls("session-post")) == 1, timeout=10)
            first = emp.calls("session-post")[0]
            assert "stop" not in first["session-interval"]
            await cp.stop_transaction(card, 2000)
            await emp.wait_for(lambda: len(emp.calls("session-post")) == 2, timeout=10)
            final = emp.calls("session-post")[1]
            assert final["session-id"] == first["session-id"] and final["session-interval"]["stop"]
            assert emp.duplicates == 1  # the same session-id twice: the EMP replaces, not adds
            stranger = await cp.start_transaction(2, "12345678", meter_start=0)
            await cp.stop_transaction(stranger, 100)
    finally:
        await gateway.stop()
    out = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "sessions", "-c", str(config_path), "list", "--tsv"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    header, *lines = out.strip().splitlines()
    assert header.startswith("session\tstate\torigin\tevse_id\temp")
    assert len(lines) == 2
    assert any("finished\tcard\tDE*CPO*E3001*1\tsandbox" in line for line in lines)
    # The unknown card's session: nobody authorized it, so its CDR stays here for ops.
    assert any("DE*CPO*E3001*2\t(local)" in line for line in lines)
