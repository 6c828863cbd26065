"""A 2.0.1 charger on the npm package `ocpp-rpc` in strict mode (it checks both directions
against the OCA 2.0.1 schemas), driven by tests/peers/charger201.mjs: boot, status,
Authorize, then a remote start and stop from the sandbox EMP down to the CDR."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PARTNER, Harness

PEERS = Path(__file__).resolve().parent / "peers"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")
CP = "CP-HH-001"
EVSE = "DE*CPO*E3001*2"
UID = "04A1B2C3D4E5F6"


async def _next(proc: asyncio.subprocess.Process, want: str, seen: list[dict[str, Any]]) -> None:
    """Read the charger's lines until the event `want`; every line is kept in `seen`."""
    assert proc.stdout is not None
    for _ in range(50):
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        if not line:
            raise AssertionError(f"the charger exited before {want!r}: {seen}")
        event = json.loads(line)
        seen.append(event)
        if event["event"] in (want, "error"):
            assert event["event"] == want, seen
            return
    raise AssertionError(f"no {want!r} in 50 lines: {seen}")


async def test_ocpp_rpc_strict_charger_end_to_end(harness: Harness) -> None:
    if not (PEERS / "node_modules" / "ocpp-rpc").is_dir():
        pytest.fail("tests/peers has no node_modules: run scripts/setup")
    async with harness.client() as client:
        status, body = await client.rfid_post(PARTNER, [UID])
        assert status == 200 and body["result"]["code"] == 0, body
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE, str(PEERS / "charger201.mjs"), harness.ocpp_url, CP, UID,
        cwd=PEERS, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[dict[str, Any]] = []
    try:
        await _next(proc, "ready", seen)
        async with harness.client() as client:
            status, body = await client.session_start(EVSE, "DE-8PS-C12345-6")
            assert status == 200 and body["result"]["code"] == 0, body
            session_id = body["session-start"]["session-id"]
            await _next(proc, "started", seen)
            status, body = await client.session_stop(EVSE, "DE-8PS-C12345-6", session_id)
            assert status == 200 and body["result"]["code"] == 0, body
            await _next(proc, "ended", seen)
        await harness.emp.wait_for(lambda: session_id in harness.emp.cdrs, timeout=10)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)
    by_event = {e["event"]: e for e in seen}
    assert by_event["connected"]["protocol"] == "ocpp2.0.1"
    assert by_event["boot"]["status"] == "Accepted"
    assert by_event["authorized"]["status"] == "Accepted"
    assert not [e for e in seen if e["event"] in ("invalid", "unhandled")], seen
    assert harness.emp.cdrs[session_id]["energy-consumed"] == 0.5
