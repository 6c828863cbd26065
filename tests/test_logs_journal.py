"""Under journald every log line carries its syslog priority, so `journalctl -p warning`
filters; the startup line names the version. Off the journal the lines stay plain JSON."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cpo_gateway import __version__, logs
from cpo_gateway.bench.soak import gateway as soak_gateway
from cpo_gateway.sim.emp.sandbox import SandboxEmp


async def test_journal_lines_carry_their_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SandboxEmp(api_key=soak_gateway.OUTBOUND_KEY) as emp:
        ocpp_port, oioi_port = soak_gateway.free_port(), soak_gateway.free_port()
        config = soak_gateway.write_config(
            tmp_path, emp_url=emp.url, chargers=1, ocpp_port=ocpp_port, oioi_port=oioi_port,
            log_level="info",
        )  # fmt: skip
        log_path = tmp_path / "gateway.log"
        log_path.touch()
        st = os.stat(log_path)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")  # as systemd sets it
        gateway = soak_gateway.GatewayProcess(config, ocpp_port, oioi_port, log_path)
        await gateway.start()
        try:
            with pytest.raises(InvalidStatus):  # an unknown charger: a warning
                async with connect(
                    f"ws://127.0.0.1:{ocpp_port}/ocpp/NOT-A-CHARGER",
                    subprotocols=[Subprotocol("ocpp1.6")],
                ):
                    pass
            await emp.wait_for(lambda: len(emp.stations) == 1, timeout=30)
        finally:
            assert await gateway.terminate() == 0
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines and all(line[:1] == "<" and line[2:4] == ">{" for line in lines), lines[:3]
    parsed = [(int(line[1]), json.loads(line[3:])) for line in lines]
    for priority, event in parsed:
        assert priority == logs.PRIORITY[event["level"]], (priority, event)
    ready = [e for p, e in parsed if e["event"] == "gateway.ready"]
    assert ready and ready[0]["version"] == __version__
    assert any(p == 4 for p, _ in parsed), "the refused charger is a warning (<4>)"


def test_off_the_journal_lines_are_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    out = io.StringIO()
    logs.configure("info", "json", out)
    try:
        logs.get("test").warning("test.event", key="value")
    finally:
        logs.configure("info", "auto")
    assert json.loads(out.getvalue())["event"] == "test.event"


def test_a_reload_keeps_the_chatty_libraries_quiet_unless_debugging() -> None:
    out = io.StringIO()
    logs.configure("debug", "json", out)
    try:
        assert logging.getLogger("ocpp").level == logging.DEBUG
        logs.set_level("info")  # what a reload does: frames (idTags) no longer logged
        assert logging.getLogger("ocpp").level == logging.WARNING
        assert logging.getLogger("websockets").level == logging.WARNING
        logs.set_level("debug")
        assert logging.getLogger("ocpp").level == logging.DEBUG
    finally:
        logs.configure("info", "auto")
