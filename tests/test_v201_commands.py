"""The core's commands in their 2.0.1 wire form, answered by an `ocpp` v201 charger, and the
local list chunked by what the charger says in GetVariables."""

from __future__ import annotations

from cpo_gateway.bridge.model import AuthStatus, CommandStatus
from tests.charger201 import Memory, charger201
from tests.conftest import Harness

CP = "CP-BER-001"


async def test_provisioning_commands(harness: Harness) -> None:
    memory = Memory(variables={("OCPPCommCtrlr", "HeartbeatInterval"): "60"})
    registry = harness.csms.registry
    async with charger201(harness.ocpp_url, CP, memory) as cp:
        got = await registry.get_variables(CP, [("OCPPCommCtrlr", "HeartbeatInterval")])
        assert got.accepted
        rows = got.data["getVariableResult"]
        assert isinstance(rows, list) and rows[0]["attributeValue"] == "60"
        assert (
            await registry.set_variables(CP, [("OCPPCommCtrlr", "HeartbeatInterval", "90")])
        ).accepted
        assert memory.variables["OCPPCommCtrlr", "HeartbeatInterval"] == "90"
        assert (await registry.get_base_report(CP, 7)).accepted
        assert (await registry.reset(CP, "Soft")).accepted
        assert (await registry.trigger_status(CP, 2)).accepted
        assert (await registry.change_availability(CP, 2, "Inoperative")).accepted
        assert (await registry.change_availability(CP, 0, "Operative")).accepted
        assert (await registry.unlock_connector(CP, 2)).accepted
        for task in list(cp.tasks):
            await task  # the NotifyReport the base report sends
    sent = {(a, tuple(sorted((k, str(v)) for k, v in kw.items()))) for a, kw in memory.commands}
    assert ("Reset", (("type", "OnIdle"),)) in sent
    assert (
        "TriggerMessage",
        (("evse", "{'id': 2, 'connector_id': 1}"), ("requested_message", "StatusNotification")),
    ) in sent
    assert (
        "ChangeAvailability",
        (("evse", "{'id': 2, 'connector_id': 1}"), ("operational_status", "Inoperative")),
    ) in sent
    assert ("ChangeAvailability", (("operational_status", "Operative"),)) in sent
    assert ("UnlockConnector", (("connector_id", "1"), ("evse_id", "2"))) in sent
    assert ("GetBaseReport", (("report_base", "FullInventory"), ("request_id", "7"))) in sent


async def test_local_list_chunked_by_items_and_bytes_per_message(harness: Harness) -> None:
    memory = Memory(
        variables={
            ("LocalAuthListCtrlr", "Enabled"): "true",
            ("LocalAuthListCtrlr", "ItemsPerMessage"): "4",
            ("LocalAuthListCtrlr", "BytesPerMessage"): "400",
            ("LocalAuthListCtrlr", "Entries"): "1000",
        }
    )
    registry = harness.csms.registry
    entries = [(f"{i:08X}", AuthStatus.ACCEPTED) for i in range(10)]
    async with charger201(harness.ocpp_url, CP, memory):
        assert await registry.local_list_enabled(CP) is True
        result = await registry.send_local_list(CP, 5, entries)
        assert result.accepted, result
        version = await registry.get_local_list_version(CP)
    sends = [kw for a, kw in memory.commands if a == "SendLocalList"]
    ours = [s for s in sends if s["version_number"] >= 5]
    assert [s["update_type"] for s in ours][0] == "Full"
    assert all(s["update_type"] == "Differential" for s in ours[1:])
    assert [s["version_number"] for s in ours] == list(range(5, 5 + len(ours)))
    assert all(s["items"] <= 4 for s in ours) and sum(s["items"] for s in ours) == 10
    assert len(ours) > 10 // 4  # 400 bytes hold fewer than 4 entries each
    assert sorted(memory.local_list) == sorted(tag for tag, _ in entries)
    assert version.accepted and version.data["listVersion"] == memory.list_version
    assert result.data["listVersion"] == memory.list_version


async def test_remote_stop_without_the_chargers_id_is_refused_here(harness: Harness) -> None:
    async with charger201(harness.ocpp_url, CP, Memory()) as cp:
        result = await harness.csms.registry.remote_stop(CP, 1)
        assert result.status is CommandStatus.REJECTED
        assert cp.memory.commands == [] or all(
            a != "RequestStopTransaction" for a, _ in cp.memory.commands
        )
