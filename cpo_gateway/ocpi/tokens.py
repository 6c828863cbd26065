"""OCPI 2.2.1 Token objects (mod_tokens 12.3.2): parsed and checked at the edge, rendered
back as received, and mapped to the core's PartnerToken.

Every error names the field (OCPI status 2001). A tolerant reader: unknown fields are
ignored, CiString values that are case-insensitive by the spec (country_code, party_id) are
kept upper case; a strict writer: what is stored and rendered is always a complete, valid
Token. `whitelist` becomes the core's TokenPolicy (see bridge/tokens.py for what each
allows).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from cpo_gateway.bridge.model import PartnerToken, TokenPolicy

E = TypeVar("E", bound=StrEnum)
INVALID_PARAMETERS = 2001  # OCPI status: invalid or missing parameters


class TokenError(ValueError):
    """A Token (or a part of one) that cannot be taken: `field` names where, and the
    OCPI status code to answer with."""

    def __init__(self, field: str, message: str, status_code: int = INVALID_PARAMETERS) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status_code = status_code


class TokenType(StrEnum):
    AD_HOC_USER = "AD_HOC_USER"
    APP_USER = "APP_USER"
    OTHER = "OTHER"
    RFID = "RFID"


class WhitelistType(StrEnum):
    ALWAYS = "ALWAYS"
    ALLOWED = "ALLOWED"
    ALLOWED_OFFLINE = "ALLOWED_OFFLINE"
    NEVER = "NEVER"


class ProfileType(StrEnum):
    CHEAP = "CHEAP"
    FAST = "FAST"
    GREEN = "GREEN"
    REGULAR = "REGULAR"


POLICY = {
    WhitelistType.ALWAYS: TokenPolicy.LOCAL_ONLY,
    WhitelistType.ALLOWED: TokenPolicy.LOCAL_FIRST,
    WhitelistType.ALLOWED_OFFLINE: TokenPolicy.ONLINE_FIRST,
    WhitelistType.NEVER: TokenPolicy.ONLINE_ONLY,
}
WHITELIST = {policy: whitelist for whitelist, policy in POLICY.items()}

_COUNTRY = re.compile(r"[A-Za-z]{2}")
_PARTY = re.compile(r"[A-Za-z0-9]{3}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_LANGUAGE = re.compile(r"[A-Za-z]{2}")
# RFC 3339 / ISO 8601 as OCPI writes it: seconds, optional fraction, optional Z or offset
# (a DateTime without a zone is UTC by the spec).
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class EnergyContract:
    supplier_name: str
    contract_id: str | None = None


@dataclass(frozen=True, slots=True)
class Token:
    country_code: str
    party_id: str
    uid: str
    type: TokenType
    contract_id: str
    issuer: str
    valid: bool
    whitelist: WhitelistType
    last_updated: str  # UTC, YYYY-MM-DDTHH:MM:SSZ
    visual_number: str | None = None
    group_id: str | None = None
    language: str | None = None
    default_profile_type: ProfileType | None = None
    energy_contract: EnergyContract | None = None


# --- fields -----------------------------------------------------------------------------------
def _string(value: object, field: str, max_len: int, *, ci: bool = False) -> str:
    if not isinstance(value, str):
        raise TokenError(field, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise TokenError(field, f"at most {max_len} characters, got {len(value)}")
    if ci and not _PRINTABLE.fullmatch(value):
        raise TokenError(field, "only printable ASCII characters (CiString)")
    return value


def _required(obj: Mapping[str, Any], key: str) -> object:
    if key not in obj or obj[key] is None:
        raise TokenError(key, "required")
    return obj[key]


def _optional_string(
    obj: Mapping[str, Any], key: str, max_len: int, *, ci: bool = False
) -> str | None:
    value = obj.get(key)
    return None if value is None else _string(value, key, max_len, ci=ci)


def _enum(value: object, field: str, enum: type[E]) -> E:
    if isinstance(value, str):
        try:
            return enum(value)
        except ValueError:
            pass
    names = ", ".join(e.value for e in enum)
    raise TokenError(field, f"expected one of {names}, got {value!r}"[:200])


def country_code(value: object, field: str = "country_code") -> str:
    text = _string(value, field, 2)
    if not _COUNTRY.fullmatch(text):
        raise TokenError(field, "expected an ISO-3166 alpha-2 country code")
    return text.upper()


def party_id(value: object, field: str = "party_id") -> str:
    text = _string(value, field, 3)
    if not _PARTY.fullmatch(text):
        raise TokenError(field, "expected 3 letters or digits")
    return text.upper()


def token_uid(value: object, field: str = "uid") -> str:
    text = _string(value, field, 36, ci=True)
    if not text.strip():
        raise TokenError(field, "must not be empty")
    return text


def token_type(value: object, field: str = "type") -> TokenType:
    return _enum(value, field, TokenType)


def datetime_utc(value: object, field: str) -> str:
    text = _string(value, field, 40)
    utc = _utc(text)
    if utc is None:
        raise TokenError(field, "expected an RFC 3339 date and time")
    return utc


@functools.lru_cache(maxsize=4096)  # a list's tokens share few timestamps
def _utc(text: str) -> str | None:
    if not _DATETIME.fullmatch(text):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _energy_contract(value: object) -> EnergyContract | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TokenError("energy_contract", "expected an object")
    supplier = _string(
        _required_in(value, "supplier_name", "energy_contract"),
        "energy_contract.supplier_name",
        64,
    )
    contract = value.get("contract_id")
    return EnergyContract(
        supplier,
        None if contract is None else _string(contract, "energy_contract.contract_id", 64),
    )


def _required_in(obj: Mapping[str, Any], key: str, parent: str) -> object:
    if key not in obj or obj[key] is None:
        raise TokenError(f"{parent}.{key}", "required")
    return obj[key]


def _valid(value: object) -> bool:
    if not isinstance(value, bool):
        raise TokenError("valid", f"expected true or false, got {type(value).__name__}")
    return value


def _language(value: object) -> str:
    text = _string(value, "language", 2)
    if not _LANGUAGE.fullmatch(text):
        raise TokenError("language", "expected an ISO 639-1 language code")
    return text.lower()


# One checker per field of a Token (a table: a list of a million tokens runs it 14 million
# times).
_CHECKS: dict[str, Callable[[object], Any]] = {
    "country_code": country_code,
    "party_id": party_id,
    "uid": token_uid,
    "type": token_type,
    "contract_id": lambda v: _string(v, "contract_id", 36, ci=True),
    "group_id": lambda v: _string(v, "group_id", 36, ci=True),
    "issuer": lambda v: _string(v, "issuer", 64),
    "visual_number": lambda v: _string(v, "visual_number", 64),
    "valid": _valid,
    "whitelist": lambda v: _enum(v, "whitelist", WhitelistType),
    "language": _language,
    "default_profile_type": lambda v: _enum(v, "default_profile_type", ProfileType),
    "energy_contract": _energy_contract,
    "last_updated": lambda v: datetime_utc(v, "last_updated"),
}


def _field(obj: Mapping[str, Any], key: str) -> Any:
    """One field of a Token, checked; None when absent (the caller knows if it may be)."""
    value = obj.get(key)
    return None if value is None else _CHECKS[key](value)


_REQUIRED = (
    "country_code",
    "party_id",
    "uid",
    "type",
    "contract_id",
    "issuer",
    "valid",
    "whitelist",
    "last_updated",
)
_OPTIONAL = ("visual_number", "group_id", "language", "default_profile_type", "energy_contract")
_IDENTITY = ("country_code", "party_id", "uid", "type")


def _need(body: Mapping[str, Any], key: str) -> object:
    value = body.get(key)
    if value is None:
        raise TokenError(key, "required")
    return value


def _may(body: Mapping[str, Any], key: str) -> Any:
    value = body.get(key)
    return None if value is None else _CHECKS[key](value)


def parse_token(body: object) -> Token:
    """A complete Token (PUT, or a page of the partner's list). Written out field by field:
    a pulled list runs it a million times."""
    if not isinstance(body, Mapping):
        raise TokenError("$", "expected a Token object")
    return Token(
        country_code(_need(body, "country_code")),
        party_id(_need(body, "party_id")),
        token_uid(_need(body, "uid")),
        token_type(_need(body, "type")),
        _string(_need(body, "contract_id"), "contract_id", 36, ci=True),
        _string(_need(body, "issuer"), "issuer", 64),
        _valid(_need(body, "valid")),
        _enum(_need(body, "whitelist"), "whitelist", WhitelistType),
        datetime_utc(_need(body, "last_updated"), "last_updated"),
        _may(body, "visual_number"),
        _may(body, "group_id"),
        _may(body, "language"),
        _may(body, "default_profile_type"),
        _may(body, "energy_contract"),
    )


def patch_token(stored: Token, body: object) -> Token:
    """A PATCH merged into the stored Token: present fields replace, others stay; it must
    carry last_updated, and cannot rename the token (country_code, party_id, uid, type)."""
    if not isinstance(body, Mapping):
        raise TokenError("$", "expected an object with the fields to change")
    if body.get("last_updated") is None:
        raise TokenError("last_updated", "required in a PATCH")
    changes: dict[str, Any] = {}
    for key in _REQUIRED + _OPTIONAL:
        if key not in body:
            continue
        if body[key] is None:
            if key in _REQUIRED:
                raise TokenError(key, "required: cannot be removed")
            changes[key] = None
            continue
        changes[key] = _field(body, key)
    for key in _IDENTITY:
        if key in changes and changes[key] != getattr(stored, key):
            raise TokenError(key, "cannot be changed by a PATCH (PUT the token it names)")
    return dataclasses.replace(stored, **changes)


def render(token: Token) -> dict[str, Any]:
    """The Token as JSON, optional fields left out when unset."""
    out: dict[str, Any] = {
        "country_code": token.country_code,
        "party_id": token.party_id,
        "uid": token.uid,
        "type": token.type.value,
        "contract_id": token.contract_id,
    }
    if token.visual_number is not None:
        out["visual_number"] = token.visual_number
    out["issuer"] = token.issuer
    if token.group_id is not None:
        out["group_id"] = token.group_id
    out["valid"] = token.valid
    out["whitelist"] = token.whitelist.value
    if token.language is not None:
        out["language"] = token.language
    if token.default_profile_type is not None:
        out["default_profile_type"] = token.default_profile_type.value
    if token.energy_contract is not None:
        contract: dict[str, Any] = {"supplier_name": token.energy_contract.supplier_name}
        if token.energy_contract.contract_id is not None:
            contract["contract_id"] = token.energy_contract.contract_id
        out["energy_contract"] = contract
    out["last_updated"] = token.last_updated
    return out


# --- the core's terms ---------------------------------------------------------------------------
def to_partner_token(partner: str, token: Token) -> PartnerToken:
    # What has no column of its own is kept as JSON beside the columns.
    extra: dict[str, Any] = {"issuer": token.issuer}
    if token.visual_number is not None:
        extra["visual_number"] = token.visual_number
    if token.language is not None:
        extra["language"] = token.language
    if token.default_profile_type is not None:
        extra["default_profile_type"] = token.default_profile_type.value
    if token.energy_contract is not None:
        extra["energy_contract"] = render(token)["energy_contract"]
    return PartnerToken(
        partner=partner,
        country=token.country_code,
        party=token.party_id,
        uid=token.uid,
        kind=token.type.value,
        valid=token.valid,
        policy=POLICY[token.whitelist],
        contract_id=token.contract_id,
        last_updated=token.last_updated,
        group_id=token.group_id,
        body=extra,
    )


def from_partner_token(stored: PartnerToken) -> Token:
    """The Token as received (what the store kept is valid: it was checked on the way in)."""
    body = dict(stored.body or {})
    body.update(
        country_code=stored.country,
        party_id=stored.party,
        uid=stored.uid,
        type=stored.kind,
        contract_id=stored.contract_id,
        group_id=stored.group_id,
        valid=stored.valid,
        whitelist=WHITELIST[stored.policy].value,
        last_updated=stored.last_updated,
    )
    return parse_token(body)
