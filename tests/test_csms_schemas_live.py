"""The OCA schemas through the real gateway over a real websocket: generated schema-valid
payloads of every charger->central system action get a schema-valid CallResult or a CallError
naming a field; schema-invalid ones the right code and field; known quirks are accepted;
frames without a readable message id get "-1"; the connection always stays up.

One gateway runs in its own thread for the whole module (as in test_reliability_fuzz), so
hypothesis drives a plain synchronous websocket client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cpo_gateway.csms import v16
from cpo_gateway.csms.schemas import SchemaSet
from tests.conftest import examples
from tests.schema_strategies import from_schema
from tests.test_reliability_fuzz import CP, GATEWAY_THREAD, Peer, Running, _errors

pytestmark = GATEWAY_THREAD  # the gateway's thread draws from `random` (see there)
V16 = SchemaSet.load("1.6")
TS = "2024-05-01T10:15:00Z"
# Charger->central system actions of the security extension: recognised, not handled yet.
NOT_HANDLED = v16.CHARGE_POINT_ACTIONS - set(v16.INBOUND)
# Bounded: each example is a round trip through the gateway (and a commit for transactions).
LIVE = settings(
    max_examples=examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("schemas"))
    with structlog.testing.capture_logs() as events:
        running.events = events
        running.start()
        try:
            yield running
        finally:
            running.stop()
    assert running.gateway is not None and running.gateway.tasks.failures == 0


@pytest.fixture(scope="module")
def peer(server: Running) -> Iterator[Peer]:
    p = Peer(server.ocpp_url)
    yield p
    p.close()


def assert_answer(action: str, reply: list[Any]) -> None:
    """A schema-valid CallResult, or a CallError naming the field (NotSupported for the
    actions not handled yet)."""
    if reply[0] == 3:
        assert V16.check_result(action, reply[2]) is None, (action, reply)
        return
    assert reply[0] == 4, reply
    if action in NOT_HANDLED:
        assert reply[2] == "NotSupported", reply
        return
    assert reply[2].endswith("ConstraintViolation") or reply[2] == "FormationViolation", reply
    field = reply[4].get("field")
    assert isinstance(field, str) and field.startswith(action) and field in reply[3], reply


@LIVE
@given(
    st.sampled_from(sorted(v16.CHARGE_POINT_ACTIONS)).flatmap(
        lambda a: st.tuples(st.just(a), from_schema(V16.request_schema(a)))
    )
)
def test_schema_valid_payloads_of_every_charger_action_get_a_valid_answer(
    server: Running, peer: Peer, case: tuple[str, dict[str, Any]]
) -> None:
    action, payload = case
    assert V16.check_call(action, payload) is None  # the generator's own promise
    reply = peer.call(action, payload)
    event(
        f"{action}: {'CallResult' if reply[0] == 3 else reply[2]}"
    )  # --hypothesis-show-statistics
    assert_answer(action, reply)
    assert not _errors(server.events)


def test_every_charger_action_was_generated() -> None:
    """The property test above draws from every action of the version that a charger sends."""
    assert V16.actions() >= v16.CHARGE_POINT_ACTIONS
    assert {"LogStatusNotification", "SignedFirmwareStatusNotification"} == NOT_HANDLED


@pytest.mark.parametrize(
    ("action", "payload", "code", "field", "words"),
    [
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Off"},
         "PropertyConstraintViolation", "StatusNotification.status", "must be one of Available"),
        ("StatusNotification", {"connectorId": 1, "errorCode": "Kaputt", "status": "Faulted"},
         "PropertyConstraintViolation", "StatusNotification.errorCode", "must be one of"),
        # The tolerant parser read this; the schema wants RFC 3339.
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available",
         "timestamp": "2024-05-01 10:15:00"}, "PropertyConstraintViolation",
         "StatusNotification.timestamp", "date-time"),
        ("BootNotification", {"chargePointVendor": "V"}, "OccurenceConstraintViolation",
         "BootNotification.chargePointModel", "required"),
        ("Authorize", {"idTag": "X" * 21}, "PropertyConstraintViolation", "Authorize.idTag",
         "at most 20 characters"),
        ("Authorize", {"idTag": ["04A2B3C4"]}, "TypeConstraintViolation", "Authorize.idTag",
         "expected string"),
        ("DataTransfer", {"messageId": "m"}, "OccurenceConstraintViolation",
         "DataTransfer.vendorId", "required"),
        ("FirmwareStatusNotification", {"status": "Exploded"}, "PropertyConstraintViolation",
         "FirmwareStatusNotification.status", "must be one of"),
    ],
)  # fmt: skip
def test_schema_invalid_payloads_get_the_code_and_the_field(
    peer: Peer, action: str, payload: dict[str, Any], code: str, field: str, words: str
) -> None:
    reply = peer.call(action, payload)
    assert reply[0] == 4 and reply[2] == code, reply
    assert reply[4] == {"field": field} and reply[3].startswith(field), reply
    assert words in reply[3], reply
    peer.still_serving()


def test_a_transaction_message_the_parser_reads_is_acknowledged_despite_the_schema(
    server: Running, peer: Peer
) -> None:
    """Never refuse what a charger retries forever or drops with its energy: the schema
    problem is logged instead."""
    tag = "X" * 25  # over 20: the schema refuses it, the parser drops it from a stop
    stop = {"transactionId": 999_001, "meterStop": 500, "timestamp": TS, "idTag": tag}
    reply = peer.call("StopTransaction", stop)
    assert reply[0] == 3 and V16.check_result("StopTransaction", reply[2]) is None, reply
    logged = [e for e in server.events if e.get("event") == "ocpp.schema_tolerated"]
    assert logged and logged[-1]["field"] == "idTag" and logged[-1]["action"] == "StopTransaction"


def test_known_firmware_quirks_are_accepted_and_stored_mended(server: Running, peer: Peer) -> None:
    status = {
        "connectorId": 2.0,  # an integral float
        "errorCode": "noError",  # another case
        "status": "Chargin",  # a typo
        "timestamp": "2024-05-01T10:15:00",  # no offset: UTC
        "info": None,  # null for absent
        "vendorSpecific": {"fan": "on"},  # a member the schema does not know
    }
    reply = peer.call("StatusNotification", status)
    assert reply[:1] == [3] and reply[2] == {}, reply
    assert server.gateway is not None
    row = server._run(
        server.gateway.store.db.one(
            "SELECT state, reported_at FROM connector_status "
            "WHERE charge_point = ? AND connector = 2",
            (CP,),
        )
    )
    assert row is not None and tuple(row) == ("Charging", "2024-05-01T10:15:00Z")
    boot = {"chargePointVendor": "VendorWithAVeryLongName GmbH", "chargePointModel": "M",
            "chargeBoxSerialNumber": "SN-" + "9" * 40}  # fmt: skip
    assert peer.call("BootNotification", boot)[0] == 3
    data = peer.call("DataTransfer", {"vendorId": "com.acme", "data": {"k": 1}})
    assert data[0] == 3 and data[2] == {"status": "UnknownVendorId"}


@pytest.mark.parametrize("frame", ["this is not json", "{}", "[]", '[2, 17, "Heartbeat", {}]'])
def test_a_frame_without_a_readable_message_id_gets_minus_one(peer: Peer, frame: str) -> None:
    peer.ws.send(frame)
    reply = peer.reply_to("-1")
    assert reply[:3] == [4, "-1", "GenericError"], reply
    assert isinstance(reply[3], str) and reply[3], reply
    peer.still_serving()
