"""Everything the gateway sends a 2.0.1 charger fits its OCA 2.0.1 schema: each command
builder's output (as a Call) and each answer to a charger's Call (as a CallResult)."""

from __future__ import annotations

import pytest

from cpo_gateway.bridge.model import AuthDecision, AuthPath, AuthStatus
from cpo_gateway.csms import v201
from cpo_gateway.csms import v201_commands as cmd
from cpo_gateway.csms.connected201 import chunked
from cpo_gateway.csms.frames import encode_call
from cpo_gateway.csms.schemas import SchemaSet

V201 = SchemaSet.load("2.0.1")
NOW = "2026-05-01T12:00:00Z"
ENTRIES = [("04A1B2C3D4E5F6", AuthStatus.ACCEPTED), ("AABBCCDD", AuthStatus.BLOCKED)]
COMMANDS = [
    ("RequestStartTransaction", cmd.request_start_req(2, "GW1234567890", 17)),
    ("RequestStartTransaction", cmd.request_start_req(None, "GW1234567890", 18)),
    ("RequestStopTransaction", cmd.request_stop_req("TX-1")),
    ("GetTransactionStatus", cmd.get_transaction_status_req("TX-1")),
    ("GetTransactionStatus", cmd.get_transaction_status_req(None)),
    ("TriggerMessage", cmd.trigger_message_req("StatusNotification", 2, 1)),
    ("TriggerMessage", cmd.trigger_message_req("MeterValues", 2)),
    ("TriggerMessage", cmd.trigger_message_req("BootNotification")),
    ("ChangeAvailability", cmd.change_availability_req(2, 1, "Inoperative")),
    ("ChangeAvailability", cmd.change_availability_req(None, None, "Operative")),
    ("Reset", cmd.reset_req("Soft")),
    ("Reset", cmd.reset_req("Hard", 2)),
    ("UnlockConnector", cmd.unlock_connector_req(2, 1)),
    ("GetVariables", cmd.get_variables_req([("LocalAuthListCtrlr", "ItemsPerMessage")])),
    ("SetVariables", cmd.set_variables_req([("OCPPCommCtrlr", "HeartbeatInterval", "90")])),
    ("GetBaseReport", cmd.get_base_report_req(7, "FullInventory")),
    ("GetLocalListVersion", {}),
    ("SendLocalList", cmd.send_local_list_req(3, cmd.local_list_entries(ENTRIES), "Full")),
    ("SendLocalList", cmd.send_local_list_req(4, [], "Full")),
    ("SendLocalList", cmd.send_local_list_req(5, cmd.local_list_entries(ENTRIES), "Differential")),
]
DECISION = AuthDecision(AuthStatus.ACCEPTED, AuthPath.WHITELIST)
ANSWERS = [
    ("BootNotification", v201.boot_conf("Accepted", 60, NOW)),
    ("BootNotification", v201.boot_conf("Pending", 60, NOW)),
    ("Heartbeat", v201.heartbeat_conf(NOW)),
    ("Authorize", {"idTokenInfo": v201.id_token_info(DECISION, NOW)}),
    ("TransactionEvent", {"idTokenInfo": v201.id_token_info(DECISION, NOW)}),
    ("TransactionEvent", {}),
    ("StatusNotification", {}),
    ("NotifyEvent", {}),
    ("NotifyReport", {}),
]


@pytest.mark.parametrize(("action", "payload"), COMMANDS)
def test_commands_fit_their_schema(action: str, payload: dict[str, object]) -> None:
    assert V201.check_call(action, payload) is None, payload


@pytest.mark.parametrize(("action", "payload"), ANSWERS)
def test_answers_fit_their_schema(action: str, payload: dict[str, object]) -> None:
    assert V201.check_result(action, payload) is None, payload


def test_the_check_can_fail() -> None:
    assert V201.check_call("RequestStartTransaction", {"idToken": {"idToken": "x"}}) is not None
    assert V201.check_result("Heartbeat", {}) is not None


def test_chunks_respect_both_limits() -> None:
    items = cmd.local_list_entries([(f"{i:08X}", AuthStatus.ACCEPTED) for i in range(25)])
    chunks = chunked(items, 10, 600)
    assert sum(len(c) for c in chunks) == 25
    assert all(len(c) <= 10 for c in chunks)
    for i, chunk in enumerate(chunks):
        payload = cmd.send_local_list_req(1 + i, chunk, "Full" if i == 0 else "Differential")
        assert V201.check_call("SendLocalList", payload) is None
        frame = encode_call("0" * 36, "SendLocalList", payload)
        assert len(frame.encode()) <= 600, len(frame)
