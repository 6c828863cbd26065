"""The OCPI command bodies at the edge: each of the five parses into its typed value, every
wrong field is 2001 naming it, and arbitrary input parses or raises OcpiError, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.ocpi.commands import (
    CancelReservation,
    CommandResponseType,
    CommandResultType,
    CommandType,
    ReserveNow,
    StartSession,
    StopSession,
    TokenType,
    UnlockConnector,
    command_response,
    command_result,
    command_type,
    parse_command,
)
from cpo_gateway.ocpi.transport import OcpiError, OcpiStatus
from tests.conftest import examples

URL = "http://127.0.0.1:9/ocpi/emsp/2.2.1/commands/START_SESSION/42"


def token(**over: Any) -> dict[str, Any]:
    base = {
        "country_code": "DE",
        "party_id": "EMS",
        "uid": "04A2B3C4",
        "type": "RFID",
        "contract_id": "DE-EMS-C12345678-9",
        "issuer": "eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2026-01-01T00:00:00Z",
    }
    return {**base, **over}


def start(**over: Any) -> dict[str, Any]:
    return {"response_url": URL, "token": token(), "location_id": "LOC1", "evse_uid": "E1", **over}


def refusal(kind: CommandType, body: object) -> str:
    with pytest.raises(OcpiError) as caught:
        parse_command(kind, body)
    assert caught.value.status is OcpiStatus.INVALID_PARAMETERS
    return caught.value.message


def test_each_command_parses() -> None:
    got = parse_command(CommandType.START_SESSION, start(connector_id="1"))
    assert isinstance(got, StartSession)
    assert (got.location_id, got.evse_uid, got.connector_id) == ("LOC1", "E1", "1")
    assert str(got.token.party) == "DE*EMS" and got.token.type is TokenType.RFID
    stop = parse_command(CommandType.STOP_SESSION, {"response_url": URL, "session_id": "s-1"})
    assert stop == StopSession(URL, "s-1")
    unlock = parse_command(
        CommandType.UNLOCK_CONNECTOR,
        {"response_url": URL, "location_id": "L", "evse_uid": "E", "connector_id": "2"},
    )
    assert unlock == UnlockConnector(URL, "L", "E", "2")
    reserve = parse_command(
        CommandType.RESERVE_NOW,
        {
            "response_url": URL,
            "token": token(),
            "expiry_date": "2030-01-01T12:00:00+01:00",
            "reservation_id": "R-9",
            "location_id": "L",
        },
    )
    assert isinstance(reserve, ReserveNow)
    assert reserve.expiry_date == datetime(2030, 1, 1, 11, tzinfo=UTC)
    assert reserve.evse_uid is None
    cancel = parse_command(
        CommandType.CANCEL_RESERVATION, {"response_url": URL, "reservation_id": "R-9"}
    )
    assert cancel == CancelReservation(URL, "R-9")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**start(), "response_url": None}, "response_url"),
        ({**start(), "response_url": "ftp://x/y"}, "response_url"),
        ({**start(), "response_url": "http://" + "a" * 260}, "response_url"),
        ({**start(), "token": None}, "token"),
        ({**start(), "token": "x"}, "token"),
        ({**start(), "token": token(country_code="DEU")}, "token.country_code"),
        ({**start(), "token": token(party_id=7)}, "token.party_id"),
        ({**start(), "token": token(uid="x" * 37)}, "token.uid"),
        ({**start(), "token": token(type="CARD")}, "token.type"),
        ({**start(), "token": token(contract_id=None)}, "token.contract_id"),
        ({**start(), "token": token(valid="yes")}, "token.valid"),
        ({**start(), "token": token(whitelist="SOMETIMES")}, "token.whitelist"),
        ({**start(), "location_id": 5}, "location_id"),
        ({**start(), "evse_uid": None, "connector_id": "1"}, "evse_uid"),
        ({**start(), "location_id": "L\x00"}, "location_id"),
    ],
)
def test_a_wrong_field_is_named(body: dict[str, Any], field: str) -> None:
    assert refusal(CommandType.START_SESSION, body).startswith(field + ":")


def test_other_commands_name_their_fields() -> None:
    assert refusal(CommandType.STOP_SESSION, {"response_url": URL}).startswith("session_id:")
    assert refusal(
        CommandType.RESERVE_NOW,
        {"response_url": URL, "token": token(), "expiry_date": "soon", "reservation_id": "R"},
    ).startswith("expiry_date:")
    assert refusal(
        CommandType.UNLOCK_CONNECTOR, {"response_url": URL, "location_id": "L"}
    ).startswith("evse_uid:")
    assert refusal(CommandType.CANCEL_RESERVATION, []).startswith("body:")
    with pytest.raises(OcpiError, match="^command:"):
        command_type("START")


def test_response_and_result_objects() -> None:
    assert command_response(CommandResponseType.ACCEPTED, 30) == {
        "result": "ACCEPTED",
        "timeout": 30,
    }
    assert command_result(CommandResultType.EVSE_OCCUPIED, "in use") == {
        "result": "EVSE_OCCUPIED",
        "message": [{"language": "en", "text": "in use"}],
    }


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
FIELD_NAMES = (
    ["response_url", "token", "location_id", "evse_uid", "connector_id", "session_id",
     "reservation_id", "expiry_date", "authorization_reference"]
)  # fmt: skip
FIELDS = st.sampled_from(FIELD_NAMES)


@settings(max_examples=examples(150))
@given(st.sampled_from(list(CommandType)), JSON)
def test_arbitrary_json_parses_or_is_refused(kind: CommandType, body: object) -> None:
    try:
        parse_command(kind, body)
    except OcpiError as error:
        assert error.status is OcpiStatus.INVALID_PARAMETERS
        assert ":" in error.message


@settings(max_examples=examples(150))
@given(
    st.sampled_from(list(CommandType)),
    st.dictionaries(FIELDS, JSON, max_size=9),
    st.dictionaries(st.sampled_from(list(token())), JSON, max_size=9),
)
def test_near_valid_bodies_parse_or_name_a_field(
    kind: CommandType, over: dict[str, Any], token_over: dict[str, Any]
) -> None:
    body = {
        **start(),
        "session_id": "s",
        "reservation_id": "r",
        "expiry_date": "2030-01-01T00:00:00Z",
    }
    body.update(over)
    if isinstance(body.get("token"), dict):
        body["token"] = {**token(), **token_over}
    try:
        parsed = parse_command(kind, body)
    except OcpiError as error:
        named = error.message.split(":")[0]
        assert named.split(".")[0] in {*FIELD_NAMES, "body"}
    else:
        assert parsed.response_url == body["response_url"]


@given(st.text(max_size=80), st.sampled_from(["http", "https"]), st.integers(1, 65535))
@settings(max_examples=examples(200), deadline=None)
def test_a_response_url_origin_is_its_host_and_port_or_nothing(
    junk: str, scheme: str, port: int
) -> None:
    from cpo_gateway.bridge.links import LinkState, PartnerLink
    from cpo_gateway.ocpi.commands_api import origin, registered_origins

    link = PartnerLink("p", LinkState.REGISTERED, peer_url=f"{scheme}://127.0.0.1:{port}/v")
    assert registered_origins(link) == {("127.0.0.1", port)}
    # Whatever text a partner sends, the origin is read without raising.
    assert origin(junk) is None or origin(junk)[1] in range(0, 65536)  # type: ignore[index]
    assert origin(f"{scheme}://127.0.0.1:{port}/r/{junk}") == ("127.0.0.1", port)
    assert origin(f"ftp://127.0.0.1:{port}/{junk}") is None
    assert origin(f"{scheme}://evil.example/?u=127.0.0.1:{port}") == (
        "evil.example",
        443 if scheme == "https" else 80,
    )
