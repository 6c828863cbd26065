"""The operators' commands to a 2.0.1 charger: GetVariables, SetVariables and GetBaseReport
through the admin socket's request handler, and their arguments refused with the field named."""

from __future__ import annotations

from typing import Any

from cpo_gateway.csms import admin
from cpo_gateway.sim.charger201.simulator import SimCharger201
from tests.conftest import Harness

CP = "CP-BER-001"


def _station(h: Harness) -> SimCharger201:
    return SimCharger201(CP, h.ocpp_url, call_timeout=10)


async def _run(h: Harness, action: str, args: dict[str, Any]) -> dict[str, Any]:
    request = {"charge_point": CP, "action": action, "args": args}
    return await admin.execute(h.csms.registry, request)


async def test_variables_read_and_written_by_component_and_name(harness: Harness) -> None:
    async with _station(harness) as cs:
        await cs.connect()
        got = await _run(harness, "GetVariables", {"variable": "OCPPCommCtrlr/HeartbeatInterval"})
        assert got["status"] == "accepted", got
        (result,) = got["data"]["getVariableResult"]
        assert result["attributeValue"] == str(cs.heartbeat_interval)
        assert result["component"]["name"] == "OCPPCommCtrlr"
        put = await _run(
            harness,
            "SetVariables",
            {"variable": "OCPPCommCtrlr/HeartbeatInterval", "value": "45"},
        )
        assert put["status"] == "accepted", put
        assert cs.heartbeat_interval == 45
        report = await _run(harness, "GetBaseReport", {"reportBase": "ConfigurationInventory"})
        assert report["status"] == "accepted", report
        (asked,) = [p for a, p in cs.received if a == "GetBaseReport"]
        assert asked["reportBase"] == "ConfigurationInventory"


async def test_bad_arguments_name_the_field_and_send_nothing(harness: Harness) -> None:
    async with _station(harness) as cs:
        await cs.connect()
        before = len(cs.received)
        cases = [
            ("GetVariables", {}, "args.variable is required"),
            ("GetVariables", {"variable": "HeartbeatInterval"}, "expected Component/Variable"),
            ("SetVariables", {"variable": "A/B/C", "value": "1"}, "expected Component/Variable"),
            ("SetVariables", {"variable": "A/B"}, "args.value is required"),
            ("GetBaseReport", {"reportBase": "Everything"}, "args.reportBase"),
        ]
        for action, args, detail in cases:
            answer = await _run(harness, action, args)
            assert answer["status"] == "error" and detail in answer["detail"], (action, answer)
        assert len(cs.received) == before
