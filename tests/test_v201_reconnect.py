"""A 2.0.1 charger that comes back: the gateway asks GetTransactionStatus for each
transaction it holds open there; an unknown charger (allowed to connect) boots Pending."""

from __future__ import annotations

from pathlib import Path

from ocpp.v201 import call

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.charger201 import Memory, charger201, meter
from tests.conftest import Harness, running_gateway, write_config

CP = "CP-BER-001"


async def test_open_transactions_are_asked_about_after_a_reconnect(harness: Harness) -> None:
    async with charger201(harness.ocpp_url, CP, Memory()) as cp:
        await cp.event("Started", "OPEN-1", meter_value=meter(100, 1), token=("AABBCCDD", "Local"))
        await cp.event("Started", "DONE-1", evse=2, meter_value=meter(100, 1))
        await cp.event("Ended", "DONE-1", evse=2, meter_value=meter(200, 60), at=60)
    memory = Memory(transactions={"OPEN-1": 1})
    async with charger201(harness.ocpp_url, CP, memory, boot=False) as cp:
        await cp.call(call.Heartbeat(), suppress=False)
        await harness.emp.wait_for(
            lambda: any(a == "GetTransactionStatus" for a, _ in memory.commands), timeout=10
        )
    asked = [kw for a, kw in memory.commands if a == "GetTransactionStatus"]
    assert asked == [{"transaction_id": "OPEN-1"}]


async def test_unknown_charger_boots_pending(tmp_path: Path, emp: SandboxEmp) -> None:
    path = write_config(tmp_path, emp_url=emp.url, ocpp="allow_unknown_chargers = true")
    async with running_gateway(Gateway(load_config(path, {})), emp) as harness:
        async with charger201(harness.ocpp_url, "CP-NOBODY", Memory()) as cp:
            assert cp.boot_status == "Pending"
        async with charger201(harness.ocpp_url, CP, Memory()) as cp:
            assert cp.boot_status == "Accepted"
