"""Property tests on every OCPI parser of outside input: whatever a peer sends either parses
or raises our one error type (`OcpiError`, its message naming a field), never anything else;
the reply reader never raises at all."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.bridge.model import DeliveryStatus
from cpo_gateway.ocpi.client import delivery_of, read_reply
from cpo_gateway.ocpi.credentials import Credentials, parse_credentials
from cpo_gateway.ocpi.transport import OcpiError, OcpiStatus, envelope
from cpo_gateway.ocpi.versions import parse_details, pick_version

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
FIELDS = ("token", "url", "roles", "role", "country_code", "party_id", "business_details")


def _credentials_like() -> st.SearchStrategy[Any]:
    """Objects close to a Credentials object, with fields replaced by anything."""
    role = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["CPO", "EMSP", "HUB", "X", 1]) | JSON,
            "country_code": st.sampled_from(["NL", "nl", "N", "NLD"]) | JSON,
            "party_id": st.sampled_from(["EMS", "E1", "EMSP", "e2e"]) | JSON,
            "business_details": st.fixed_dictionaries({"name": st.text(max_size=120) | JSON})
            | JSON,
        }
    )
    return (
        st.fixed_dictionaries(
            {
                "token": st.text(max_size=70) | JSON,
                "url": st.sampled_from(["http://127.0.0.1:1/v", "ftp://x", "", "https://a"]) | JSON,
                "roles": st.lists(role, max_size=3) | JSON,
            }
        )
        | JSON
    )


@given(_credentials_like())
def test_credentials_parse_or_name_a_field(obj: Any) -> None:
    try:
        parsed = parse_credentials(obj)
    except OcpiError as exc:
        assert exc.status is OcpiStatus.INVALID_PARAMETERS
        assert exc.message.split(":")[0].split(".")[0].split("[")[0] in (*FIELDS, "body")
    else:
        assert isinstance(parsed, Credentials) and parsed.roles
        assert all(len(r.party.party_id) == 3 for r in parsed.roles)
        # what we parse, we can render and parse again to the same value
        assert parse_credentials(orjson.loads(orjson.dumps(parsed.render()))) == parsed


@given(JSON | st.lists(st.fixed_dictionaries({"version": JSON, "url": JSON}), max_size=4))
def test_versions_list_picks_or_raises_ours(data: Any) -> None:
    try:
        url = pick_version(data)
    except OcpiError as exc:
        assert exc.status in (OcpiStatus.INVALID_PARAMETERS, OcpiStatus.UNSUPPORTED_VERSION)
        assert exc.message.startswith("data")
    else:
        assert url.startswith(("http://", "https://"))


ENDPOINT = st.fixed_dictionaries(
    {
        "identifier": st.sampled_from(["credentials", "cdrs", "x" * 40]) | JSON,
        "role": st.sampled_from(["SENDER", "RECEIVER", "BOTH"]) | JSON,
        "url": st.sampled_from(["http://127.0.0.1:1/c", "nope"]) | JSON,
    }
)


@given(
    JSON
    | st.fixed_dictionaries(
        {
            "version": st.sampled_from(["2.2.1", "2.1.1"]),
            "endpoints": st.lists(ENDPOINT, max_size=4),
        }
    )
)
def test_details_parse_or_raise_ours(data: Any) -> None:
    try:
        details = parse_details(data)
    except OcpiError as exc:
        assert exc.message.startswith("data")
    else:
        assert details.url("credentials") is not None


@given(st.integers(100, 599), st.binary(max_size=200) | JSON.map(lambda v: orjson.dumps(v)))
def test_any_reply_is_read_and_only_an_envelope_with_1xxx_is_success(
    status: int, body: bytes
) -> None:
    reply = read_reply(status, body, {})
    delivery = delivery_of(reply)
    success = reply.ok
    assert (delivery.status is DeliveryStatus.DELIVERED) == success
    if success:
        assert 200 <= status <= 299 and reply.status_code is not None
        assert 1000 <= reply.status_code <= 1999


@given(st.sampled_from(list(OcpiStatus)), JSON)
def test_our_envelopes_read_back(status: OcpiStatus, data: Any) -> None:
    body = orjson.dumps(envelope(data, status, "m"))
    reply = read_reply(200, body)
    assert reply.status_code == int(status) and reply.ok == (status is OcpiStatus.SUCCESS)
    assert reply.data == data


def test_html_and_empty_bodies_are_retried_not_delivered() -> None:
    for body in (b"<html><body>login</body></html>", b"", b"   "):
        delivery = delivery_of(read_reply(200, body))
        assert delivery.status is DeliveryStatus.RETRY and "no OCPI envelope" in delivery.detail
    refused = delivery_of(read_reply(200, orjson.dumps(envelope(None, OcpiStatus.UNKNOWN_TOKEN))))
    assert refused.status is DeliveryStatus.REJECTED and refused.code == 2004
    assert delivery_of(read_reply(401, b"")).status is DeliveryStatus.UNAUTHORIZED
    busy = delivery_of(read_reply(503, b"", {"Retry-After": "7"}))
    assert busy.status is DeliveryStatus.RETRY and busy.retry_after_s == 7.0
