"""OCPP-J 1.6 frames and payload parsers of the charger side (no I/O)."""

from __future__ import annotations

import copy

import orjson
import pytest

from cpo_gateway.bridge.model import (
    AuthDecision,
    AuthPath,
    AuthStatus,
    BootInfo,
    CommandStatus,
    ConnectorState,
    EnergySample,
    StatusReport,
    TransactionStart,
)
from cpo_gateway.csms import v16
from cpo_gateway.csms.frames import (
    Call,
    CallError,
    CallResult,
    ErrorCode,
    FrameError,
    PayloadError,
    encode_call,
    encode_error,
    encode_frame_error,
    encode_result,
    parse_frame,
)

CP = "CP-0001"
TS = "2024-05-01T10:15:00Z"

METER_VALUES: dict[str, object] = {
    "connectorId": 1,
    "transactionId": 4711,
    "meterValue": [
        {
            "timestamp": TS,
            "sampledValue": [
                {
                    "value": "12345",
                    "context": "Sample.Periodic",
                    "format": "Raw",
                    "measurand": "Energy.Active.Import.Register",
                    "location": "Outlet",
                    "unit": "Wh",
                },
                {"value": "4100.5", "measurand": "Energy.Active.Import.Register", "phase": "L1"},
                {"value": "230.1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
                {"value": "229.8", "measurand": "Voltage", "phase": "L2-N", "unit": "V"},
                {"value": "16.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": "55", "measurand": "SoC", "location": "EV", "unit": "Percent"},
                {"value": "12.346", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
            ],
        }
    ],
}


def meter_values(**sampled: object) -> dict[str, object]:
    """A MeterValues payload with one sampled value built from keyword fields."""
    return {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [sampled]}]}


def payload_error(fn: object, *args: object) -> PayloadError:
    assert callable(fn)
    with pytest.raises(PayloadError) as info:
        fn(*args)
    return info.value


# --- frames -----------------------------------------------------------------------------------
def test_call_result_and_error_frames_parse() -> None:
    assert parse_frame('[2,"19223201","Heartbeat",{}]') == Call("19223201", "Heartbeat", {})
    assert parse_frame(b'[3,"u1",{"status":"Accepted"}]') == CallResult(
        "u1", {"status": "Accepted"}
    )
    assert parse_frame('[4,"u2","NotSupported","no",{"a":1}]') == CallError(
        "u2", "NotSupported", "no", {"a": 1}
    )


@pytest.mark.parametrize(
    ("data", "code", "uid", "words"),
    [
        ("not json", ErrorCode.FORMATION_VIOLATION, None, "not JSON"),
        (b"\xff\xfe", ErrorCode.FORMATION_VIOLATION, None, "not JSON"),
        ('{"a": 1}', ErrorCode.FORMATION_VIOLATION, None, "array"),
        ("[]", ErrorCode.FORMATION_VIOLATION, None, "array"),
        ('["2","u","Heartbeat",{}]', ErrorCode.FORMATION_VIOLATION, "u", "not an integer"),
        ('[true,"u","Heartbeat",{}]', ErrorCode.FORMATION_VIOLATION, "u", "not an integer"),
        ('[5,"u","Heartbeat",{}]', ErrorCode.PROTOCOL_ERROR, "u", "5 is not 2, 3 or 4"),
        ("[2]", ErrorCode.FORMATION_VIOLATION, None, "unique id"),
        ('[2,17,"Heartbeat",{}]', ErrorCode.FORMATION_VIOLATION, None, "unique id"),
        ('[2,"u","Heartbeat"]', ErrorCode.PROTOCOL_ERROR, "u", "needs 4 elements, got 3"),
        ('[2,"u","Heartbeat",{},{}]', ErrorCode.FORMATION_VIOLATION, "u", "got 5"),
        ('[2,"u",7,{}]', ErrorCode.FORMATION_VIOLATION, "u", "action"),
        ('[2,"u","Heartbeat",[]]', ErrorCode.FORMATION_VIOLATION, "u", "Heartbeat: payload"),
        ('[3,"u",null]', ErrorCode.FORMATION_VIOLATION, "u", "payload"),
        ('[4,"u","GenericError","x",[]]', ErrorCode.FORMATION_VIOLATION, "u", "details"),
        ('[4,"u",1,"x",{}]', ErrorCode.FORMATION_VIOLATION, "u", "strings"),
    ],
)
def test_broken_frames_name_the_problem(
    data: str | bytes, code: ErrorCode, uid: str | None, words: str
) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(data)
    assert info.value.error_code is code
    assert info.value.unique_id == uid
    assert words in info.value.description


def test_over_long_unique_id_is_refused_but_kept_for_the_answer() -> None:
    uid = "x" * 37
    with pytest.raises(FrameError) as info:
        parse_frame(encode_call(uid, "Heartbeat", {}))
    assert info.value.error_code is ErrorCode.FORMATION_VIOLATION
    assert info.value.unique_id == uid
    assert "37 characters" in info.value.description
    assert parse_frame(encode_call("y" * 36, "Heartbeat", {})) == Call("y" * 36, "Heartbeat", {})


def test_encoders_are_compact_json() -> None:
    assert encode_call("1", "Heartbeat", {}) == '[2,"1","Heartbeat",{}]'
    assert encode_result("1", {"currentTime": TS}) == f'[3,"1",{{"currentTime":"{TS}"}}]'
    assert (
        encode_error("1", ErrorCode.NOT_IMPLEMENTED, "nope") == '[4,"1","NotImplemented","nope",{}]'
    )


def test_frame_errors_are_answered_only_for_calls_and_unreadable_ids_with_minus_one() -> None:
    def error_of(data: str) -> FrameError:
        with pytest.raises(FrameError) as info:
            parse_frame(data)
        return info.value

    answer = encode_frame_error(error_of('[2,"u","Heartbeat",[]]'))
    assert answer is not None
    assert orjson.loads(answer)[:3] == [4, "u", "FormationViolation"]
    in_2_0_1 = encode_frame_error(error_of('[2,"u","Heartbeat",[]]'), "2.0.1")
    assert in_2_0_1 is not None and orjson.loads(in_2_0_1)[:3] == [4, "u", "FormatViolation"]
    # No readable message id: answered with "-1" (OCPP-J), the version's code.
    for frame in ("nonsense", "{}", "[]", '[2, 7, "Heartbeat", {}]'):
        for version, code in (("1.6", "GenericError"), ("2.0.1", "RpcFrameworkError")):
            minus_one = encode_frame_error(error_of(frame), version)
            assert minus_one is not None, frame
            assert orjson.loads(minus_one)[:3] == [4, "-1", code], (frame, version)
    unknown_type = encode_frame_error(error_of('[7,"u",{}]'), "2.0.1")
    assert unknown_type is not None
    assert orjson.loads(unknown_type)[:3] == [4, "u", "MessageTypeNotSupported"]
    assert encode_frame_error(error_of('[3,"u",7]')) is None  # never answer an answer
    assert encode_frame_error(error_of('[4,"u","X","y",7]')) is None
    assert encode_frame_error(error_of("[3, 7, {}]")) is None  # not even without an id


def test_payload_error_becomes_a_frame_error_for_the_call() -> None:
    error = payload_error(v16.parse_authorize, {})
    frame_error = error.with_unique_id("abc")
    assert (frame_error.unique_id, frame_error.error_code) == ("abc", error.error_code)
    assert frame_error.details == {"field": "Authorize.idTag"}


# --- inbound parsers: valid payloads ------------------------------------------------------------
def test_boot_notification_cuts_vendor_strings_to_the_schema() -> None:
    p: dict[str, object] = {
        "chargePointVendor": "VendorWithAVeryLongName GmbH",
        "chargePointModel": "Wallbox-22",
        "chargeBoxSerialNumber": "SN-" + "9" * 40,
        "firmwareVersion": "1.2.3",
        "iccid": "8949",
        "vendorSpecificExtra": {"x": 1},
    }
    assert v16.parse_boot(CP, p) == BootInfo(
        CP, "VendorWithAVeryLongN", "Wallbox-22", ("SN-" + "9" * 40)[:25], "1.2.3"
    )
    p["chargePointSerialNumber"] = "CPSN-1"
    assert v16.parse_boot(CP, p).serial == "CPSN-1"


def test_heartbeat_ignores_anything_sent() -> None:
    assert v16.INBOUND["Heartbeat"](CP, {"unexpected": 1}) is None


def test_status_notification_known_and_unknown_states() -> None:
    p: dict[str, object] = {
        "connectorId": 2,
        "errorCode": "NoError",
        "status": "SuspendedEV",
        "timestamp": "2024-05-01T10:15:00.123+02:00",
        "info": "cable locked",
    }
    assert v16.parse_status(CP, p) == StatusReport(
        CP, 2, ConnectorState.SUSPENDED_EV, "NoError", "2024-05-01T10:15:00.123+02:00"
    )
    typo = v16.parse_status(CP, {"connectorId": 0, "errorCode": "OtherErorr", "status": "Chargin"})
    assert (typo.connector_id, typo.state, typo.error_code, typo.timestamp) == (
        0,
        None,
        "OtherErorr",
        None,
    )


def test_authorize_keeps_the_id_tag_as_sent_up_to_20_characters() -> None:
    tag = "04A2B3C4D5E6F7_ser12"
    assert v16.parse_authorize({"idTag": tag}) == tag
    # Over 20 (CiString20) it is refused, naming the field: a cut tag would be another card.
    with pytest.raises(PayloadError) as refused:
        v16.parse_authorize({"idTag": tag + "3"})
    assert refused.value.error_code == ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert refused.value.details == {"field": "Authorize.idTag"}


def test_start_transaction_accepts_integral_floats_and_null_optionals() -> None:
    p: dict[str, object] = {
        "connectorId": 1,
        "idTag": "DE8PS1234567X",
        "meterStart": 12.0,
        "timestamp": TS,
        "reservationId": None,
    }
    assert v16.parse_start(CP, p) == TransactionStart(CP, 1, "DE8PS1234567X", 12, TS, None)
    assert v16.parse_start(CP, {**p, "reservationId": 9}).reservation_id == 9


def test_stop_transaction_with_and_without_optionals() -> None:
    bare = v16.parse_stop(CP, {"transactionId": -1, "meterStop": 20000, "timestamp": TS})
    assert (bare.transaction_id, bare.id_tag, bare.reason, bare.samples) == (-1, None, None, ())
    full = v16.parse_stop(
        CP,
        {
            "transactionId": 4711,
            "meterStop": 20000,
            "timestamp": TS,
            "idTag": "04A2B3C4",
            "reason": "EVDisconected",  # a vendor typo is kept, not refused
            "transactionData": [
                {"timestamp": "2024-05-01T09:00:00Z", "sampledValue": [{"value": "100"}]},
                {"timestamp": TS, "sampledValue": [{"value": "20", "unit": "kWh"}]},
            ],
        },
    )
    assert (full.id_tag, full.reason) == ("04A2B3C4", "EVDisconected")
    assert full.samples == (
        EnergySample("2024-05-01T09:00:00Z", 100.0),
        EnergySample(TS, 20000.0),
    )


def test_meter_values_take_only_the_unphased_raw_import_register() -> None:
    report = v16.parse_meter_values(CP, METER_VALUES)
    assert (report.charge_point_id, report.connector_id, report.transaction_id) == (CP, 1, 4711)
    assert report.samples == (EnergySample(TS, 12345.0), EnergySample(TS, 12346.0))


@pytest.mark.parametrize(
    ("fields", "wh"),
    [
        ({"value": "1500"}, 1500.0),  # measurand, unit and format all default
        ({"value": "1500", "unit": "Wh"}, 1500.0),
        ({"value": "1.5", "unit": "kWh"}, 1500.0),
        ({"value": "1.5", "unit": "kwh"}, 1500.0),
        ({"value": 1500}, 1500.0),  # a number instead of a decimal string
        ({"value": "1500", "measurand": None, "unit": None, "format": "Raw"}, 1500.0),
    ],
)
def test_energy_units_and_defaults(fields: dict[str, object], wh: float) -> None:
    assert v16.parse_meter_values(CP, meter_values(**fields)).samples == (EnergySample(TS, wh),)


@pytest.mark.parametrize(
    "fields",
    [
        {"value": "ab12cd", "format": "SignedData"},
        {"value": "3.2", "measurand": "Power.Active.Import", "unit": "kW"},
        {"value": "700", "phase": "L2"},
        {"value": "99", "measurand": "Energy.Active.Export.Register"},
    ],
)
def test_other_sampled_values_are_skipped(fields: dict[str, object]) -> None:
    assert v16.parse_meter_values(CP, meter_values(**fields)).samples == ()


def test_meter_value_without_register_needs_no_timestamp() -> None:
    p = {"connectorId": 1, "meterValue": [{"sampledValue": [{"value": "5", "measurand": "SoC"}]}]}
    assert v16.parse_meter_values(CP, p).samples == ()


def test_data_transfer_and_status_notifications() -> None:
    assert v16.parse_data_transfer({"vendorId": "com.vendor", "messageId": "m", "data": "x"}) == (
        "com.vendor",
        "m",
        "x",
    )
    assert v16.parse_data_transfer({"vendorId": "v", "data": {"k": 1}}) == ("v", None, {"k": 1})
    assert v16.parse_diagnostics_status({"status": "Uploaded"}) == "Uploaded"
    assert v16.parse_firmware_status({"status": "Installing"}) == "Installing"


# --- inbound parsers: errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fn", "args", "code", "description"),
    [
        (
            v16.parse_start,
            (CP, {"connectorId": 1, "idTag": "A", "meterStart": "abc", "timestamp": TS}),
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "StartTransaction.meterStart: expected integer, got 'abc'",
        ),
        (
            v16.parse_start,
            (CP, {"connectorId": 1, "idTag": "A", "meterStart": 1.5, "timestamp": TS}),
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "StartTransaction.meterStart: expected integer, got 1.5",
        ),
        (
            v16.parse_start,
            (CP, {"connectorId": 1, "meterStart": 0, "timestamp": TS}),
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "StartTransaction.idTag: required field is missing",
        ),
        (
            v16.parse_start,
            (CP, {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "yesterday"}),
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "StartTransaction.timestamp: expected ISO 8601 date-time, got 'yesterday'",
        ),
        (
            v16.parse_start,
            (CP, {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": 1714558500}),
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "StartTransaction.timestamp: expected ISO 8601 date-time string, got 1714558500",
        ),
        (
            v16.parse_start,
            (CP, {"connectorId": 1, "idTag": "A", "meterStart": 2**70, "timestamp": TS}),
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "StartTransaction.meterStart: expected a 64-bit integer",
        ),
        (
            v16.parse_status,
            (CP, {"connectorId": -1, "errorCode": "NoError", "status": "Available"}),
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "StatusNotification.connectorId: expected a connector id >= 0, got -1",
        ),
        (
            v16.parse_status,
            (CP, {"connectorId": 1, "errorCode": "NoError", "status": None}),
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "StatusNotification.status: expected string, got null",
        ),
        (
            v16.parse_boot,
            (CP, {"chargePointVendor": "V"}),
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "BootNotification.chargePointModel: required field is missing",
        ),
        (
            v16.parse_authorize,
            ({"idTag": 1234},),
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "Authorize.idTag: expected string, got 1234",
        ),
        (
            v16.parse_stop,
            (CP, {"transactionId": 1, "meterStop": 1, "timestamp": TS, "transactionData": {}}),
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "StopTransaction.transactionData: expected array, got an object",
        ),
        (
            v16.parse_meter_values,
            (CP, {"connectorId": 1}),
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "MeterValues.meterValue: required field is missing",
        ),
        (
            v16.parse_data_transfer,
            ({"messageId": "m"},),
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "DataTransfer.vendorId: required field is missing",
        ),
        (
            v16.parse_firmware_status,
            ({"status": ["Installed"]},),
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "FirmwareStatusNotification.status: expected string, got an array",
        ),
    ],
)
def test_payload_errors_name_path_expectation_and_value(
    fn: object, args: tuple[object, ...], code: ErrorCode, description: str
) -> None:
    error = payload_error(fn, *args)
    assert error.error_code is code
    assert error.description.startswith(description)


def test_non_numeric_energy_value_names_its_index() -> None:
    p = copy.deepcopy(METER_VALUES)
    meter_value = p["meterValue"]
    assert isinstance(meter_value, list)
    meter_value[0]["sampledValue"][6]["value"] = "12,346"
    error = payload_error(v16.parse_meter_values, CP, p)
    assert error.error_code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert error.description == (
        "MeterValues.meterValue[0].sampledValue[6].value: "
        "expected a decimal number of kWh, got '12,346'"
    )
    assert error.details == {"field": "MeterValues.meterValue[0].sampledValue[6].value"}


@pytest.mark.parametrize(
    ("mv", "code", "description"),
    [
        (
            {"timestamp": TS, "sampledValue": [{"value": "1", "unit": "varh"}]},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "x[0].sampledValue[0].unit: expected Wh or kWh",
        ),
        (
            {"timestamp": TS, "sampledValue": [{"unit": "Wh"}]},
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "x[0].sampledValue[0].value: required field is missing",
        ),
        (
            {"timestamp": TS, "sampledValue": [{"value": "NaN"}]},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "x[0].sampledValue[0].value: expected a decimal number of Wh, got 'NaN'",
        ),
        (
            {"timestamp": TS, "sampledValue": [{"value": True}]},
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "x[0].sampledValue[0].value: expected decimal string, got true",
        ),
        (
            {"sampledValue": [{"value": "1"}]},
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "x[0].timestamp: required field is missing",
        ),
        (
            {"timestamp": "01.05.2024 10:15", "sampledValue": [{"value": "1"}]},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "x[0].timestamp: expected ISO 8601 date-time, got '01.05.2024 10:15'",
        ),
        (
            {"timestamp": TS},
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            "x[0].sampledValue: required",
        ),
        ("reading", ErrorCode.TYPE_CONSTRAINT_VIOLATION, "x[0]: expected object, got 'reading'"),
    ],
)
def test_energy_sample_errors(mv: object, code: ErrorCode, description: str) -> None:
    error = payload_error(v16.energy_samples, [mv], "x")
    assert error.error_code is code
    assert error.description.startswith(description)


# --- which actions are handled --------------------------------------------------------------------
def test_unhandled_actions_get_not_supported_or_not_implemented() -> None:
    assert set(v16.INBOUND) <= v16.CHARGE_POINT_ACTIONS
    assert v16.unhandled_action_error("RemoteStartTransaction") is ErrorCode.NOT_SUPPORTED
    assert v16.unhandled_action_error("SignCertificate") is ErrorCode.NOT_SUPPORTED
    assert v16.unhandled_action_error("Teleport") is ErrorCode.NOT_IMPLEMENTED
    assert v16.INBOUND["Heartbeat"](CP, {}) is None
    assert v16.INBOUND["Authorize"](CP, {"idTag": "AB"}) == "AB"


# --- answers and commands ---------------------------------------------------------------------------
def test_confirmation_builders() -> None:
    decision = AuthDecision(AuthStatus.ACCEPTED, AuthPath.WHITELIST)
    info = v16.id_tag_info(decision, None)
    assert info == {"status": "Accepted"}
    assert v16.id_tag_info(decision, "2024-06-01T00:00:00Z")["expiryDate"] == "2024-06-01T00:00:00Z"
    assert v16.start_conf(7, info) == {"transactionId": 7, "idTagInfo": info}
    assert v16.stop_conf(None) == {}
    assert v16.stop_conf(info) == {"idTagInfo": info}
    assert v16.boot_conf("Accepted", 300, TS) == {
        "status": "Accepted",
        "currentTime": TS,
        "interval": 300,
    }
    assert v16.heartbeat_conf(TS) == {"currentTime": TS}
    assert v16.data_transfer_conf("UnknownVendorId") == {"status": "UnknownVendorId"}
    assert orjson.loads(encode_result("u", v16.empty_conf())) == [3, "u", {}]


def test_command_builders() -> None:
    assert v16.remote_start_req(1, "DE8PS1234567X") == {"idTag": "DE8PS1234567X", "connectorId": 1}
    assert v16.remote_start_req(None, "AB") == {"idTag": "AB"}
    assert v16.remote_stop_req(4711) == {"transactionId": 4711}
    assert v16.send_local_list_req(3, [("04A2B3C4", AuthStatus.BLOCKED)]) == {
        "listVersion": 3,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": "04A2B3C4", "idTagInfo": {"status": "Blocked"}}],
    }
    assert v16.get_local_list_version_req() == {}
    assert v16.trigger_message_req("StatusNotification", 2) == {
        "requestedMessage": "StatusNotification",
        "connectorId": 2,
    }
    assert v16.trigger_message_req("Heartbeat") == {"requestedMessage": "Heartbeat"}
    assert v16.change_availability_req(0, "Inoperative") == {
        "connectorId": 0,
        "type": "Inoperative",
    }
    assert v16.reset_req("Soft") == {"type": "Soft"}
    assert v16.unlock_connector_req(1) == {"connectorId": 1}
    assert v16.get_configuration_req([]) == {}
    assert v16.get_configuration_req(["HeartbeatInterval"]) == {"key": ["HeartbeatInterval"]}
    assert v16.change_configuration_req("HeartbeatInterval", "300") == {
        "key": "HeartbeatInterval",
        "value": "300",
    }


def test_command_builders_refuse_what_the_schema_forbids() -> None:
    with pytest.raises(ValueError, match="idTag"):
        v16.remote_start_req(1, "X" * 21)
    with pytest.raises(ValueError, match="Hard or Soft"):
        v16.reset_req("Warm")
    with pytest.raises(ValueError, match="Operative"):
        v16.change_availability_req(1, "Off")


@pytest.mark.parametrize(
    ("action", "payload", "status"),
    [
        ("RemoteStartTransaction", {"status": "Accepted"}, CommandStatus.ACCEPTED),
        ("UnlockConnector", {"status": "Unlocked"}, CommandStatus.ACCEPTED),
        ("ChangeAvailability", {"status": "Scheduled"}, CommandStatus.ACCEPTED),
        ("RemoteStopTransaction", {"status": "Rejected"}, CommandStatus.REJECTED),
        ("UnlockConnector", {"status": "UnlockFailed"}, CommandStatus.REJECTED),
        ("SendLocalList", {"status": "Failed"}, CommandStatus.REJECTED),
        ("SendLocalList", {"status": "VersionMismatch"}, CommandStatus.REJECTED),
        ("SendLocalList", {"status": "NotSupported"}, CommandStatus.NOT_SUPPORTED),
        ("TriggerMessage", {"status": "NotImplemented"}, CommandStatus.NOT_SUPPORTED),
        ("Reset", {"status": "Maybe"}, CommandStatus.FAILED),
        ("Reset", {}, CommandStatus.FAILED),
    ],
)
def test_command_status(action: str, payload: dict[str, object], status: CommandStatus) -> None:
    result = v16.read_command_status(action, payload)
    assert result.status is status
    assert result.data.get("status") == payload.get("status")


def test_command_status_failures_say_why() -> None:
    assert v16.read_command_status("Reset", {}).detail == (
        "Reset.conf.status: expected string, missing"
    )
    assert (
        "unexpected status 'Maybe'" in v16.read_command_status("Reset", {"status": "Maybe"}).detail
    )
    version = v16.read_command_status("GetLocalListVersion", {"listVersion": "3"})
    assert version.status is CommandStatus.FAILED
    assert "listVersion: expected integer, got '3'" in version.detail


def test_read_results_carrying_data() -> None:
    version = v16.read_command_status("GetLocalListVersion", {"listVersion": 12})
    assert (version.status, version.data) == (CommandStatus.ACCEPTED, {"listVersion": 12})
    key = {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    config = v16.read_command_status(
        "GetConfiguration", {"configurationKey": [key, "junk"], "unknownKey": ["Foo"]}
    )
    assert config.status is CommandStatus.ACCEPTED
    assert config.data == {"configurationKey": [key], "unknownKey": ["Foo"]}


def test_call_error_answers_to_commands() -> None:
    unsupported = v16.read_call_error(CallError("u", "NotImplemented", "no such action", {}))
    assert unsupported.status is CommandStatus.NOT_SUPPORTED
    failed = v16.read_call_error(CallError("u", "InternalError", "boom", {}))
    assert (failed.status, failed.detail) == (CommandStatus.FAILED, "InternalError: boom")
