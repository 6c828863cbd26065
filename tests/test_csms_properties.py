"""Property tests: whatever a charger sends, the OCPP 1.6 layer answers with our errors only."""

from __future__ import annotations

import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.bridge.model import EnergySample
from cpo_gateway.csms import connected, v16
from cpo_gateway.csms.frames import (
    Call,
    CallError,
    CallResult,
    FrameError,
    PayloadError,
    encode_call,
    encode_error,
    encode_result,
    parse_frame,
)

RELAXED = settings(deadline=None)  # no timing assertions: CI machines vary

# Text orjson can encode (no lone surrogates); integers within 64 bits, as orjson writes them.
TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)

# Field names and values of the 1.6 schemas, so generated objects reach the parsers' checks
# instead of failing at the first missing field.
NAMES = [
    "chargePointVendor",
    "chargePointModel",
    "chargePointSerialNumber",
    "chargeBoxSerialNumber",
    "firmwareVersion",
    "connectorId",
    "errorCode",
    "status",
    "timestamp",
    "idTag",
    "meterStart",
    "meterStop",
    "reservationId",
    "transactionId",
    "reason",
    "transactionData",
    "meterValue",
    "vendorId",
    "messageId",
    "data",
]
LIKELY = (
    st.sampled_from(["2024-05-01T10:15:00Z", "2024-05-01T10:15:00+02:00", "Available", "Wh"])
    | st.sampled_from(["kWh", "L1", "SignedData", "Raw", "Energy.Active.Import.Register"])
    | st.integers(-3, 3)
    | st.sampled_from([1.0, 2.5, "12.5", "abc", "NaN", "1e400"])
)
VALUE = LIKELY | JSON
SAMPLED = st.dictionaries(
    st.sampled_from(["value", "measurand", "phase", "unit", "format", "context"]), VALUE
)
METER_VALUE = st.fixed_dictionaries(
    {}, optional={"timestamp": VALUE, "sampledValue": st.lists(SAMPLED | VALUE, max_size=4)}
)
FIELD_VALUE = VALUE | st.lists(METER_VALUE | VALUE, max_size=3)
PAYLOAD = st.dictionaries(st.sampled_from(NAMES) | TEXT, FIELD_VALUE, max_size=10)


def parse_or_frame_error(data: str | bytes) -> object:
    try:
        return parse_frame(data)
    except FrameError as error:
        assert error.error_code  # a code the server can send back
        return error


@RELAXED
@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_frame_error(data: bytes) -> None:
    result = parse_or_frame_error(data)
    assert isinstance(result, Call | CallResult | CallError | FrameError)


@RELAXED
@given(st.text(max_size=200))
def test_arbitrary_text_parse_or_raise_frame_error(data: str) -> None:
    result = parse_or_frame_error(data)
    assert isinstance(result, Call | CallResult | CallError | FrameError)


@RELAXED
@given(JSON)
def test_arbitrary_json_parse_or_raise_frame_error(value: object) -> None:
    result = parse_or_frame_error(orjson.dumps(value))
    assert isinstance(result, Call | CallResult | CallError | FrameError)


@RELAXED
@given(st.lists(st.sampled_from([2, 3, 4]) | VALUE, min_size=1, max_size=6).map(orjson.dumps))
def test_frame_shaped_arrays_parse_or_raise_frame_error(data: bytes) -> None:
    result = parse_or_frame_error(data)
    if isinstance(result, FrameError) and result.unique_id is not None:
        assert orjson.loads(data)[1] == result.unique_id  # an id is only ever the one sent


@RELAXED
@given(st.sampled_from(sorted(v16.INBOUND)), PAYLOAD)
def test_every_inbound_parser_succeeds_or_raises_payload_error(
    action: str, payload: dict[str, object]
) -> None:
    try:
        v16.INBOUND[action]("CP-1", payload)
    except PayloadError as error:
        assert error.description.startswith(action)
        assert str(error.details["field"]) in error.description


TS = "2024-05-01T10:15:00Z"
REGISTER = {"value": "12.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"}
READINGS = [{"timestamp": TS, "sampledValue": [REGISTER, {"value": "230", "measurand": "Voltage"}]}]
VALID: dict[str, dict[str, object]] = {
    "Authorize": {"idTag": "04A2B3C4"},
    "BootNotification": {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1"},
    "DataTransfer": {"vendorId": "com.v", "messageId": "m", "data": "x"},
    "DiagnosticsStatusNotification": {"status": "Uploaded"},
    "FirmwareStatusNotification": {"status": "Installed"},
    "Heartbeat": {},
    "MeterValues": {"connectorId": 1, "transactionId": 7, "meterValue": READINGS},
    "StartTransaction": {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": TS},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Charging"},
    "SignCertificate": {"csr": "-----BEGIN CERTIFICATE REQUEST-----\n..."},
    "SecurityEventNotification": {"type": "FirmwareUpdated", "timestamp": TS, "techInfo": "1.2"},
    "StopTransaction": {
        "transactionId": 7,
        "meterStop": 9,
        "timestamp": TS,
        "reason": "Local",
        "transactionData": READINGS,
    },
}


@st.composite
def mutated(draw: st.DrawFn, action: str) -> dict[str, object]:
    """A valid payload of the action with fields kept, replaced by anything, or dropped."""
    payload: dict[str, object] = draw(st.dictionaries(TEXT, JSON, max_size=2))  # unknown extras
    for key, valid in VALID[action].items():
        choice = draw(st.integers(0, 5))
        if choice <= 2:
            payload[key] = valid
        elif choice <= 4:
            payload[key] = draw(FIELD_VALUE)
    return payload


@RELAXED
@given(st.sampled_from(sorted(VALID)).flatmap(lambda a: st.tuples(st.just(a), mutated(a))))
def test_mutated_valid_payloads_succeed_or_raise_payload_error(
    case: tuple[str, dict[str, object]],
) -> None:
    action, payload = case
    try:
        v16.INBOUND[action]("CP-1", payload)
    except PayloadError as error:
        assert error.description.startswith(action)
        assert str(error.details["field"]) in error.description


def test_every_inbound_action_has_a_valid_example() -> None:
    assert set(VALID) == set(v16.INBOUND)
    for action, payload in VALID.items():
        v16.INBOUND[action]("CP-1", payload)  # raises if the example is not valid


@RELAXED
@given(st.lists(st.tuples(st.integers(0, 10**9), st.sampled_from(["Wh", "kWh", None])), max_size=5))
def test_energy_readings_are_converted_to_wh(readings: list[tuple[int, str | None]]) -> None:
    sampled = [
        {"value": str(value)} | ({} if unit is None else {"unit": unit}) for value, unit in readings
    ]
    payload = {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2024-05-01T10:15:00Z", "sampledValue": sampled}],
    }
    samples = v16.parse_meter_values("CP-1", payload).samples
    assert len(samples) == len(readings)
    for sample, (value, unit) in zip(samples, readings, strict=True):
        assert isinstance(sample, EnergySample)
        assert math.isclose(sample.wh, value * (1000 if unit == "kWh" else 1))


UNIQUE_ID = st.text(st.characters(codec="utf-8"), max_size=36)
OBJECT = st.dictionaries(TEXT, JSON, max_size=5)


@RELAXED
@given(UNIQUE_ID, TEXT, OBJECT)
def test_call_round_trip(unique_id: str, action: str, payload: dict[str, object]) -> None:
    assert parse_frame(encode_call(unique_id, action, payload)) == Call(unique_id, action, payload)


@RELAXED
@given(UNIQUE_ID, OBJECT)
def test_result_round_trip(unique_id: str, payload: dict[str, object]) -> None:
    assert parse_frame(encode_result(unique_id, payload)) == CallResult(unique_id, payload)


@RELAXED
@given(UNIQUE_ID, TEXT, TEXT, OBJECT)
def test_error_round_trip(
    unique_id: str, code: str, description: str, details: dict[str, object]
) -> None:
    frame = encode_error(unique_id, code, description, details)
    assert parse_frame(frame) == CallError(unique_id, code, description, details)


@RELAXED
@given(st.text(max_size=12), st.integers(min_value=1, max_value=10**7))
def test_a_list_length_in_the_charger_configuration_is_read_or_ignored(raw: str, most: int) -> None:
    value = connected._count(raw, most=most)
    if value is None:
        assert not (raw.strip().isascii() and raw.strip().isdigit()) or not (
            0 < int(raw.strip()) <= most
        )
    else:
        assert 0 < value <= most and value == int(raw.strip())
