"""OCPI Token objects: every field checked with an error naming it, PATCH merged into the
stored token, whitelist types as the core's policies; properties over arbitrary input."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.bridge.model import TokenPolicy
from cpo_gateway.ocpi.tokens import (
    TokenError,
    TokenType,
    WhitelistType,
    from_partner_token,
    parse_token,
    patch_token,
    render,
    to_partner_token,
)

FULL: dict[str, Any] = {
    "country_code": "de",
    "party_id": "tnm",
    "uid": "12345678905880",
    "type": "RFID",
    "contract_id": "DE8ACC12E46L89",
    "visual_number": "DF000-2001-8999-1",
    "issuer": "TheNewMotion",
    "group_id": "DF000-2001-8999",
    "valid": True,
    "whitelist": "ALLOWED",
    "language": "IT",
    "default_profile_type": "GREEN",
    "energy_contract": {"supplier_name": "Greenpeace Energy eG", "contract_id": "0123456789"},
    "last_updated": "2018-12-10T18:25:10+01:00",
}


def _error(body: object) -> TokenError:
    with pytest.raises(TokenError) as info:
        parse_token(body)
    return info.value


def test_the_specs_full_example_parses_and_renders_normalised() -> None:
    token = parse_token(FULL)
    assert (token.country_code, token.party_id) == ("DE", "TNM")
    assert token.type is TokenType.RFID and token.whitelist is WhitelistType.ALLOWED
    assert token.last_updated == "2018-12-10T17:25:10Z"  # UTC
    out = render(token)
    assert out["language"] == "it"
    assert out["energy_contract"] == FULL["energy_contract"]
    assert parse_token(out) == token


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("country_code", "DEU", "country_code"),
        ("party_id", "T!M", "party_id"),
        ("uid", "x" * 37, "uid"),
        ("uid", "", "uid"),
        ("type", "CARD", "type"),
        ("contract_id", 5, "contract_id"),
        ("issuer", "i" * 65, "issuer"),
        ("valid", "true", "valid"),
        ("whitelist", "SOMETIMES", "whitelist"),
        ("language", "ita", "language"),
        ("default_profile_type", "SLOW", "default_profile_type"),
        ("energy_contract", {"contract_id": "1"}, "energy_contract.supplier_name"),
        ("last_updated", "yesterday", "last_updated"),
        ("last_updated", "2018-13-40T25:61:00Z", "last_updated"),
    ],
)
def test_a_bad_field_is_named(field: str, value: object, named: str) -> None:
    error = _error({**FULL, field: value})
    assert error.field == named and error.status_code == 2001
    assert str(error).startswith(named + ":")


@pytest.mark.parametrize(
    "field",
    [
        "country_code",
        "party_id",
        "uid",
        "type",
        "contract_id",
        "issuer",
        "valid",
        "whitelist",
        "last_updated",
    ],
)
def test_a_missing_required_field_is_named(field: str) -> None:
    body = {k: v for k, v in FULL.items() if k != field}
    assert _error(body).field == field


def test_patch_merges_and_needs_last_updated() -> None:
    stored = parse_token(FULL)
    patched = patch_token(stored, {"valid": False, "last_updated": "2019-06-19T02:11:11Z"})
    assert patched.valid is False and patched.issuer == stored.issuer
    assert patched.last_updated == "2019-06-19T02:11:11Z"
    with pytest.raises(TokenError) as info:
        patch_token(stored, {"valid": False})
    assert info.value.field == "last_updated"
    with pytest.raises(TokenError) as info:
        patch_token(stored, {"uid": "OTHER", "last_updated": "2019-06-19T02:11:11Z"})
    assert info.value.field == "uid"
    with pytest.raises(TokenError) as info:
        patch_token(stored, {"issuer": None, "last_updated": "2019-06-19T02:11:11Z"})
    assert info.value.field == "issuer"
    cleared = patch_token(stored, {"group_id": None, "last_updated": "2019-06-19T02:11:11Z"})
    assert cleared.group_id is None


@pytest.mark.parametrize(
    ("whitelist", "policy"),
    [
        ("ALWAYS", TokenPolicy.LOCAL_ONLY),
        ("ALLOWED", TokenPolicy.LOCAL_FIRST),
        ("ALLOWED_OFFLINE", TokenPolicy.ONLINE_FIRST),
        ("NEVER", TokenPolicy.ONLINE_ONLY),
    ],
)
def test_whitelist_types_are_the_cores_policies(whitelist: str, policy: TokenPolicy) -> None:
    token = parse_token({**FULL, "whitelist": whitelist})
    neutral = to_partner_token("emsp", token)
    assert neutral.policy is policy
    assert neutral.card_uid == "12345678905880"
    # What the core keeps renders back to the same Token.
    assert from_partner_token(neutral) == token


# --- properties --------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=6)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(sorted(FULL))


@given(JSON)
def test_arbitrary_json_parses_or_raises_token_error(body: object) -> None:
    try:
        token = parse_token(body)
    except TokenError as exc:
        assert exc.field and exc.status_code == 2001
    else:
        assert parse_token(render(token)) == token


@given(st.dictionaries(FIELDS, JSON, max_size=6))
def test_a_token_with_arbitrary_fields_replaced_parses_or_names_one(
    changes: dict[str, Any],
) -> None:
    body = {**FULL, **changes}
    try:
        token = parse_token(body)
    except TokenError as exc:
        assert exc.field.split(".")[0] in FULL or exc.field == "$"
    else:
        assert parse_token(orjson.loads(orjson.dumps(render(token)))) == token


@given(st.dictionaries(FIELDS, JSON, max_size=6))
def test_an_arbitrary_patch_merges_or_raises_token_error(changes: dict[str, Any]) -> None:
    stored = parse_token(FULL)
    body = {**changes, "last_updated": "2020-01-01T00:00:00Z"}
    try:
        patched = patch_token(stored, body)
    except TokenError as exc:
        assert exc.field
    else:
        assert (patched.country_code, patched.uid) == (stored.country_code, stored.uid)
        assert parse_token(render(patched)) == patched


@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_json_parse_or_raise_token_error(raw: bytes) -> None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    try:
        token = parse_token(body)
    except TokenError as exc:
        assert exc.field
    else:
        assert render(token)["uid"] == token.uid
