"""Property tests for the OIOI parsers of outside input: whatever a peer sends, the result is a
typed value or an OioiError 400/230 (requests), or a verdict (EMP replies), never another
exception.
"""

from __future__ import annotations

from email.utils import formatdate

import orjson
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.bridge.ids import UID_LENGTHS, normalise_uid
from cpo_gateway.bridge.model import Delivery, DeliveryStatus, UserKind, VerifyOutcome
from cpo_gateway.oioi import codes
from cpo_gateway.oioi.messages import (
    SUPPORTED_CALLS,
    OioiError,
    parse_envelope,
    parse_rfid_post,
    parse_session_start,
    parse_session_stop,
    read_delivery,
    read_verify,
)
from cpo_gateway.oioi.replies import MAX_RETRY_AFTER_S, parse_retry_after, read_result

# orjson refuses lone surrogates and integers beyond 64 bits, so generated JSON avoids them.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=25,
)

FIELDS = [
    "user",
    "identifier-type",
    "identifier",
    "token",
    "connector-id",
    "payment-reference",
    "session-id",
    "rfids",
    "partner-identifier",
]
kinds = st.sampled_from([k.value for k in UserKind] + ["EVCO-ID", "Rfid"])
hex_uids = st.text("0123456789abcdefABCDEF", min_size=1, max_size=20)
field_values = json_values | kinds | text | hex_uids | st.lists(hex_uids | json_values, max_size=5)


def mostly(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Usually a valid value, sometimes anything: validation then reaches every field."""
    # Not st.one_of: it flattens nested unions, so valid would be a few branches among many.
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda pick: valid if pick else field_values
    )


users = mostly(
    st.fixed_dictionaries(
        {"identifier-type": mostly(kinds), "identifier": mostly(names)},
        optional={"token": json_values},
    )
)
# Mostly valid objects of the calls' own fields, and objects of any of those fields.
objects = st.fixed_dictionaries(
    {"user": users, "connector-id": mostly(names), "partner-identifier": mostly(names)},
    optional={
        "payment-reference": mostly(st.none() | text),
        "session-id": mostly(st.none() | text),
        "rfids": mostly(st.lists(hex_uids, max_size=5)),
        "token": json_values,
    },
) | st.dictionaries(st.sampled_from(FIELDS) | text, field_values | users, max_size=6)
PARSERS = (parse_session_start, parse_session_stop, parse_rfid_post)


def assert_bad_request(error: OioiError) -> None:
    assert (error.http_status, error.code) == (400, 230)
    assert error.message


def parse_all(body: bytes) -> None:
    try:
        call, obj = parse_envelope(body)
    except OioiError as error:
        assert_bad_request(error)
        return
    assert call in SUPPORTED_CALLS
    assert isinstance(obj, dict)
    for parse in PARSERS:
        try:
            parse(obj)
        except OioiError as error:
            assert_bad_request(error)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_400_230(body: bytes) -> None:
    parse_all(body)


@given(json_values)
def test_arbitrary_json_parses_or_raises_400_230(doc: object) -> None:
    parse_all(orjson.dumps(doc))


@given(st.sampled_from(SUPPORTED_CALLS), objects)
def test_call_objects_parse_or_raise_400_230(call: str, obj: dict[str, object]) -> None:
    parse_all(orjson.dumps({call: obj}))


@given(objects)
def test_each_parser_returns_a_typed_request_or_raises_400_230(obj: dict[str, object]) -> None:
    for parse in PARSERS:
        try:
            request = parse(obj)
        except OioiError as error:
            assert_bad_request(error)
            continue
        if parse is parse_rfid_post:
            assert request.partner_identifier == obj["partner-identifier"]  # type: ignore[union-attr]
        else:
            assert request.evse_id == obj["connector-id"]  # type: ignore[union-attr]
            assert request.user.kind in UserKind  # type: ignore[union-attr]


@given(st.lists(hex_uids | st.sampled_from(["", " ", "g1", "1" * 21]), max_size=40))
def test_rfid_post_normalises_every_entry_or_rejects_all(rfids: list[str]) -> None:
    obj: dict[str, object] = {"rfids": rfids, "partner-identifier": "p"}
    valid = [uid for uid in rfids if uid.strip() and len(uid) <= 20 and "g" not in uid]
    try:
        request = parse_rfid_post(obj)
    except OioiError as error:
        assert_bad_request(error)
        assert len(valid) < len(rfids)
        assert f"got {len(rfids) - len(valid)} invalid" in error.message
        return
    assert valid == rfids
    assert request.submitted == len(rfids)
    assert request.uids == list(dict.fromkeys(normalise_uid(uid) for uid in rfids))
    for uid in request.uids:
        assert len(uid) in UID_LENGTHS
        assert uid == uid.upper()


@given(
    st.integers(min_value=-1000, max_value=1000),
    st.binary(max_size=100) | json_values.map(orjson.dumps),
    st.none() | text | st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.floats(min_value=0, max_value=4e9),
)
def test_read_delivery_never_raises(
    http_status: int, body: bytes, retry_after: str | None, now: float
) -> None:
    delivery = read_delivery(http_status, body, retry_after, now)
    assert isinstance(delivery, Delivery)
    assert delivery.http_status == http_status
    assert delivery.detail.startswith(f"HTTP {http_status}")
    if delivery.retry_after_s is not None:
        assert delivery.status is DeliveryStatus.RETRY
        assert 0.0 <= delivery.retry_after_s <= MAX_RETRY_AFTER_S


@given(
    st.integers(min_value=-1000, max_value=1000),
    st.binary(max_size=100) | json_values.map(orjson.dumps),
)
def test_only_a_readable_success_code_is_a_delivery(http_status: int, body: bytes) -> None:
    delivery = read_delivery(http_status, body, None, 0.0)
    if delivery.status is DeliveryStatus.DELIVERED:
        assert 200 <= http_status <= 299
        assert delivery.code is not None and codes.is_success(delivery.code)
        assert read_result(body)[0] == delivery.code


@given(
    st.integers(min_value=200, max_value=299),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
def test_2xx_delivery_follows_the_code(http_status: int, code: int) -> None:
    delivery = read_delivery(http_status, orjson.dumps({"result": {"code": code}}), None, 0.0)
    assert delivery.code == code
    if code == codes.INVALID_API_KEY:  # our key, whatever the message: the EMP is paused
        assert delivery.status is DeliveryStatus.UNAUTHORIZED
    elif codes.is_success(code):
        assert delivery.status is DeliveryStatus.DELIVERED
    elif codes.is_transient(code):
        assert delivery.status is DeliveryStatus.RETRY
    else:
        assert delivery.status is DeliveryStatus.REJECTED


@given(
    st.integers(min_value=-1000, max_value=1000),
    st.binary(max_size=100) | json_values.map(orjson.dumps),
)
def test_read_verify_never_raises(http_status: int, body: bytes) -> None:
    outcome = read_verify(http_status, body)
    assert outcome in VerifyOutcome
    if not 200 <= http_status <= 499:
        assert outcome is VerifyOutcome.UNREACHABLE


@given(st.integers(min_value=0, max_value=10**6), st.floats(min_value=1e9, max_value=3e9))
def test_retry_after_reads_both_forms(seconds: int, now: float) -> None:
    assert parse_retry_after(str(seconds), now) == min(float(seconds), MAX_RETRY_AFTER_S)
    whole_now = float(int(now))  # HTTP dates have whole seconds
    delay = parse_retry_after(formatdate(whole_now + seconds, usegmt=True), whole_now)
    assert delay == min(float(seconds), MAX_RETRY_AFTER_S)


@given(text, st.floats(allow_nan=True, allow_infinity=True))
def test_retry_after_never_raises(value: str, now: float) -> None:
    delay = parse_retry_after(value, now)
    assert delay is None or 0.0 <= delay <= MAX_RETRY_AFTER_S


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_code_hierarchy_is_total(code: int) -> None:
    chain = list(codes.lineage(code))
    assert chain[0] == code
    assert len(chain) <= 3
    assert codes.describe(code)
    known = codes.nearest_known(code)
    assert known is None or (known in codes.CODES and known in chain)
