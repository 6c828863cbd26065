"""The OCA schemas of the ocpp package: both versions compile, problems name the field and the
version's code, every payload the gateway builds fits its schema, and the quirks pass mends
only what it documents."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.bridge.model import AuthDecision, AuthPath, AuthStatus
from cpo_gateway.csms import quirks, v16, v16_security
from cpo_gateway.csms.codes import CODES, Problem, codes_for, respell
from cpo_gateway.csms.schemas import SchemaProblem, SchemaSet, schema_files
from cpo_gateway.csms.v16_commands import TRIGGERABLE
from tests.conftest import examples
from tests.schema_strategies import from_schema

V16 = SchemaSet.load("1.6")
V201 = SchemaSet.load("2.0.1")
NOW = "2024-05-01T10:15:00Z"


def test_both_versions_compile_every_schema_the_package_ships() -> None:
    assert SchemaSet.load("1.6") is V16  # once per process
    assert (V16.version, V201.version) == ("1.6", "2.0.1")
    for schemas in (V16, V201):
        files = schema_files(schemas.version)
        assert len(schemas.actions()) * 2 == len(files), "a request and a response per action"
    drafts = {s["$schema"] for s in schema_files("1.6").values()}
    assert drafts == {
        "http://json-schema.org/draft-04/schema#",  # 1.6 core
        "http://json-schema.org/draft-06/schema#",  # the 1.6 security extension
    }
    assert {s["$schema"] for s in schema_files("2.0.1").values()} == {
        "http://json-schema.org/draft-06/schema#"
    }
    assert set(v16.INBOUND) <= V16.actions()
    assert V16.actions() == v16.CHARGE_POINT_ACTIONS | v16.CENTRAL_SYSTEM_ACTIONS
    assert {"TransactionEvent", "NotifyReport", "RequestStartTransaction"} <= V201.actions()
    with pytest.raises(ValueError, match="unknown OCPP version"):
        SchemaSet.load("1.5")


def test_the_2_0_1_schemas_use_their_definitions() -> None:
    """draft-06 $refs into #/definitions resolve: a nested member is checked."""
    ok = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
    assert V201.check_call("BootNotification", ok) is None
    problem = V201.check_call("BootNotification", {**ok, "chargingStation": {"model": "M"}})
    assert problem == SchemaProblem(
        "chargingStation.vendorName", "is required", "OccurrenceConstraintViolation"
    )  # 2.0.1 spells it right


@pytest.mark.parametrize(
    ("action", "payload", "field", "message", "code_1_6"),
    [
        ("Authorize", {}, "idTag", "is required", "OccurenceConstraintViolation"),
        ("Authorize", {"idTag": 7.5}, "idTag", "must be a string", "TypeConstraintViolation"),
        ("Authorize", {"idTag": "X" * 21}, "idTag", "must be at most 20 characters",
         "PropertyConstraintViolation"),
        ("Heartbeat", {"extra": 1}, "extra", "is not allowed", "FormationViolation"),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Off"},
         "status", "must be one of Available, Preparing, Charging, SuspendedEVSE, SuspendedEV, "
         "Finishing, ...", "PropertyConstraintViolation"),
        ("MeterValues", {"connectorId": 1, "meterValue": []}, "meterValue",
         "must have at least 1 item", "OccurenceConstraintViolation"),
        ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "noon",
         "sampledValue": [{"value": "1"}]}]}, "meterValue[0].timestamp",
         "must be a date-time string (RFC 3339, with an offset or Z)",
         "PropertyConstraintViolation"),
        ("BootNotification", [], "", "must be an object", "TypeConstraintViolation"),
    ],
)  # fmt: skip
def test_a_problem_names_the_field_and_the_code_of_each_version(
    action: str, payload: object, field: str, message: str, code_1_6: str
) -> None:
    assert V16.check_call(action, payload) == SchemaProblem(field, message, code_1_6)
    renamed = {
        "FormationViolation": "FormatViolation",
        "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
    }
    assert respell(code_1_6, "2.0.1") == renamed.get(code_1_6, code_1_6)


def test_the_code_tables_differ_where_the_specs_do() -> None:
    differ = {p for p in Problem if CODES["1.6"][p] != CODES["2.0.1"][p]}
    assert differ == {
        Problem.FORMAT,
        Problem.OCCURRENCE,
        Problem.UNREADABLE_ID,
        Problem.MESSAGE_TYPE,
    }
    assert codes_for("1.6")[Problem.UNREADABLE_ID] == "GenericError"
    assert codes_for("2.0.1")[Problem.UNREADABLE_ID] == "RpcFrameworkError"
    assert respell("NotSupported", "2.0.1") == "NotSupported"
    assert respell("SomethingElse", "2.0.1") == "SomethingElse"


def test_an_action_without_a_schema_is_a_problem_not_an_exception() -> None:
    problem = V16.check_call("NoSuchAction", {})
    assert problem is not None and (problem.field, problem.error_code) == ("", "NotImplemented")
    assert V16.check_result("TransactionEvent", {}) is not None  # a 2.0.1 action


# --- (a) everything the gateway sends fits its schema --------------------------------------
ENTRIES = [("04A2B3C4", AuthStatus.ACCEPTED), ("DE8PS1234567X", AuthStatus.BLOCKED)]
COMMANDS: list[tuple[str, dict[str, object]]] = [
    ("RemoteStartTransaction", v16.remote_start_req(1, "DE8PS1234567X")),
    ("RemoteStartTransaction", v16.remote_start_req(None, "04A2B3C4")),
    ("RemoteStopTransaction", v16.remote_stop_req(4711)),
    ("SendLocalList", v16.send_local_list_req(3, ENTRIES)),
    ("SendLocalList", v16.send_local_list_req(4, [], "Differential")),
    ("GetLocalListVersion", v16.get_local_list_version_req()),
    *[("TriggerMessage", v16.trigger_message_req(m)) for m in sorted(TRIGGERABLE)],
    ("TriggerMessage", v16.trigger_message_req("StatusNotification", 2)),
    ("ChangeAvailability", v16.change_availability_req(0, "Inoperative")),
    ("ChangeAvailability", v16.change_availability_req(2, "Operative")),
    ("Reset", v16.reset_req("Hard")),
    ("Reset", v16.reset_req("Soft")),
    ("UnlockConnector", v16.unlock_connector_req(1)),
    ("GetConfiguration", v16.get_configuration_req()),
    ("GetConfiguration", v16.get_configuration_req(["HeartbeatInterval", "LocalAuthListMaxLength"])),
    ("ChangeConfiguration", v16.change_configuration_req("HeartbeatInterval", "300")),
]  # fmt: skip


def test_every_command_builder_fits_its_request_schema() -> None:
    built = {action for action, _ in COMMANDS}
    exported = {
        name.removesuffix("_req") for name in v16.__all__ if name.endswith("_req")
    }  # every builder v16 exports is exercised
    assert len(exported) == len(built)
    for action, payload in COMMANDS:
        assert V16.check_call(action, payload) is None, (action, payload)


def _results() -> list[tuple[str, dict[str, object]]]:
    infos = [v16.id_tag_info(AuthDecision(s, AuthPath.NONE)) for s in AuthStatus]
    infos += [v16.id_tag_info(AuthDecision(AuthStatus.ACCEPTED, AuthPath.WHITELIST), NOW)]
    return [
        ("BootNotification", v16.boot_conf("Accepted", 300, NOW)),
        ("BootNotification", v16.boot_conf("Pending", 60, NOW)),
        ("Heartbeat", v16.heartbeat_conf(NOW)),
        *[("Authorize", dict[str, object](idTagInfo=info)) for info in infos],
        *[("StartTransaction", v16.start_conf(17, info)) for info in infos],
        ("StopTransaction", v16.stop_conf()),
        *[("StopTransaction", v16.stop_conf(info)) for info in infos],
        ("DataTransfer", v16.data_transfer_conf("UnknownVendorId")),
        ("DataTransfer", v16.data_transfer_conf("Accepted", "x")),
        *[
            (a, v16.empty_conf())
            for a in (
                "StatusNotification",
                "MeterValues",
                "DiagnosticsStatusNotification",
                "FirmwareStatusNotification",
                "SecurityEventNotification",
            )
        ],
        ("SignCertificate", v16_security.sign_certificate_conf(True)),
        ("SignCertificate", v16_security.sign_certificate_conf(False)),
    ]


def test_every_certificate_command_fits_its_request_schema() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    commands = [
        ("CertificateSigned", v16_security.certificate_signed_req(pem)),
        ("InstallCertificate", v16_security.install_certificate_req("CentralSystemRootCertificate", pem)),
        ("GetInstalledCertificateIds", v16_security.get_installed_certificate_ids_req("ManufacturerRootCertificate")),
        ("DeleteCertificate", v16_security.delete_certificate_req("SHA256", "ab" * 32, "cd" * 32, "01")),
        ("ExtendedTriggerMessage", v16_security.extended_trigger_req("SignChargePointCertificate")),
        ("ExtendedTriggerMessage", v16_security.extended_trigger_req("StatusNotification", 1)),
    ]  # fmt: skip
    for action, payload in commands:
        assert V16.check_call(action, payload) is None, (action, payload)


def test_every_call_result_the_handlers_build_fits_its_response_schema() -> None:
    answered = {action for action, _ in _results()}
    assert answered == set(v16.INBOUND)
    for action, payload in _results():
        assert V16.check_result(action, payload) is None, (action, payload)


def test_a_broken_answer_is_caught() -> None:
    """The check above can fail: an answer missing a member or with a wrong value."""
    assert V16.check_result("Heartbeat", {}) == SchemaProblem(
        "currentTime", "is required", "OccurenceConstraintViolation"
    )
    problem = V16.check_result("Authorize", {"idTagInfo": {"status": "Maybe"}})
    assert problem is not None and problem.field == "idTagInfo.status"


# --- quirks ------------------------------------------------------------------------------
MENDED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("StatusNotification",
     {"connectorId": 1.0, "errorCode": "OtherErorr", "status": "Chargin", "timestamp": None},
     {"connectorId": 1, "errorCode": "OtherError", "status": "Charging"}),
    ("StatusNotification",
     {"connectorId": 1, "errorCode": "noerror", "status": "SUSPENDED_EV", "vendorExtra": [1]},
     {"connectorId": 1, "errorCode": "NoError", "status": "SuspendedEV"}),
    ("MeterValues",
     {"connectorId": 1, "meterValue": [{"timestamp": "2024-05-01T10:15:00",
      "sampledValue": [{"value": 1500, "unit": "kwh", "measurand": None}]}]},
     {"connectorId": 1, "meterValue": [{"timestamp": "2024-05-01T10:15:00Z",
      "sampledValue": [{"value": "1500", "unit": "kWh"}]}]}),
    ("StopTransaction",
     {"transactionId": 7, "meterStop": 9.0, "timestamp": NOW, "reason": "EVDisconected"},
     {"transactionId": 7, "meterStop": 9, "timestamp": NOW, "reason": "EVDisconnected"}),
    ("BootNotification",
     {"chargePointVendor": "VendorWithAVeryLongName GmbH", "chargePointModel": "M",
      "chargeBoxSerialNumber": "SN-" + "9" * 40},
     {"chargePointVendor": "VendorWithAVeryLongN", "chargePointModel": "M",
      "chargeBoxSerialNumber": ("SN-" + "9" * 40)[:25]}),
    ("DataTransfer", {"vendorId": "com.acme", "data": {"k": 1}},
     {"vendorId": "com.acme", "data": '{"k":1}'}),
]  # fmt: skip


@pytest.mark.parametrize(("action", "sent", "mended"), MENDED)
def test_known_quirks_are_mended_into_schema_valid_payloads(
    action: str, sent: dict[str, Any], mended: dict[str, Any]
) -> None:
    assert V16.check_call(action, sent) is not None  # the quirk alone would be refused
    out = quirks.normalise(V16.request_schema(action), sent)
    assert out == mended
    assert V16.check_call(action, out) is None


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("Authorize", {"idTag": "X" * 21}),  # a token is never cut
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Faulty"}),
        ("StatusNotification", {"connectorId": -1.5, "errorCode": "NoError", "status": "Faulted"}),
        ("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "now"}),
    ],
)
def test_what_is_not_a_known_quirk_stays_refused(action: str, payload: dict[str, Any]) -> None:
    assert V16.check_call(action, quirks.normalise(V16.request_schema(action), payload))


def test_a_conforming_payload_comes_back_as_the_same_object() -> None:
    payload = {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": NOW}
    assert quirks.normalise(V16.request_schema("StatusNotification"), payload) is payload


@settings(max_examples=examples(60), deadline=None)
@given(st.sampled_from(sorted(v16.INBOUND)).flatmap(
    lambda a: st.tuples(st.just(a), from_schema(V16.request_schema(a)))
))  # fmt: skip
def test_mending_never_changes_a_valid_payload(case: tuple[str, dict[str, Any]]) -> None:
    action, payload = case
    assert V16.check_call(action, payload) is None
    assert quirks.normalise(V16.request_schema(action), payload) == payload


@settings(max_examples=examples(200), deadline=None)
@given(st.sampled_from(sorted(V16.actions() | V201.actions())).flatmap(
    lambda a: st.tuples(st.just(a), st.booleans(), st.data())
))  # fmt: skip
def test_the_generator_covers_every_schema_of_both_versions(case: tuple[str, bool, Any]) -> None:
    action, request, data = case
    for schemas in (V16, V201):
        if action not in schemas.actions():
            continue
        schema = schemas.request_schema(action) if request else schemas.response_schema(action)
        payload = data.draw(from_schema(schema))
        check = schemas.check_call if request else schemas.check_result
        assert check(action, payload) is None, (schemas.version, action, payload)
