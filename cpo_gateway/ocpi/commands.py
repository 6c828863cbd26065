"""OCPI 2.2.1 commands (mod_commands), CPO side: the five command bodies an eMSP posts to
``{commands}/{command}``, read into typed values, and the two objects we send back.

The parsers are the edge: every field the gateway acts on is checked here, and anything
wrong is an `OcpiError` 2001 whose message names the field ("token.uid: expected a string of
1 to 36 printable characters, got 7"). Fields the gateway does not act on are read
tolerantly (unknown keys are ignored), except that a known field of the wrong type is still
refused: a peer that sends it wrong has misread the spec, and is better told now.

Types follow the spec: CiString(n) is printable ASCII of at most n characters, compared
case-insensitively; URL(255); DateTime is RFC 3339 (the spec wants UTC, an offset is read).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlsplit

from cpo_gateway.ocpi.transport import OcpiError, Party

_PRINTABLE = re.compile(r"[ -~]+")
URL_MAX = 255


class CommandType(StrEnum):
    CANCEL_RESERVATION = "CANCEL_RESERVATION"
    RESERVE_NOW = "RESERVE_NOW"
    START_SESSION = "START_SESSION"
    STOP_SESSION = "STOP_SESSION"
    UNLOCK_CONNECTOR = "UNLOCK_CONNECTOR"


class CommandResponseType(StrEnum):
    """What the CPO answers at once: whether it can send the command to the charger."""

    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    ACCEPTED = "ACCEPTED"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"


class CommandResultType(StrEnum):
    """What the CPO posts to response_url once the charger has answered (or not)."""

    ACCEPTED = "ACCEPTED"
    CANCELED_RESERVATION = "CANCELED_RESERVATION"
    EVSE_OCCUPIED = "EVSE_OCCUPIED"
    EVSE_INOPERATIVE = "EVSE_INOPERATIVE"
    FAILED = "FAILED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    TIMEOUT = "TIMEOUT"
    UNKNOWN_RESERVATION = "UNKNOWN_RESERVATION"


class TokenType(StrEnum):
    AD_HOC_USER = "AD_HOC_USER"
    APP_USER = "APP_USER"
    OTHER = "OTHER"
    RFID = "RFID"


WHITELIST_TYPES = frozenset({"ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER"})


@dataclass(frozen=True, slots=True)
class CommandToken:
    """The Token a START_SESSION or RESERVE_NOW carries, as far as a command needs it: the
    eMSP has authorized it, so only whose it is and what the charger is to be given."""

    party: Party
    uid: str
    type: TokenType
    contract_id: str


@dataclass(frozen=True, slots=True)
class StartSession:
    response_url: str
    token: CommandToken
    location_id: str
    evse_uid: str | None
    connector_id: str | None
    authorization_reference: str | None


@dataclass(frozen=True, slots=True)
class StopSession:
    response_url: str
    session_id: str


@dataclass(frozen=True, slots=True)
class UnlockConnector:
    response_url: str
    location_id: str
    evse_uid: str
    connector_id: str


@dataclass(frozen=True, slots=True)
class ReserveNow:
    response_url: str
    token: CommandToken
    expiry_date: datetime
    reservation_id: str
    location_id: str
    evse_uid: str | None
    authorization_reference: str | None


@dataclass(frozen=True, slots=True)
class CancelReservation:
    response_url: str
    reservation_id: str


Command = StartSession | StopSession | UnlockConnector | ReserveNow | CancelReservation


def command_type(raw: str) -> CommandType:
    """The path's {command}: one of the five CommandType values (2001 otherwise)."""
    try:
        return CommandType(raw)
    except ValueError:
        raise OcpiError.invalid(
            "command", f"one of {', '.join(t.value for t in CommandType)}", raw
        ) from None


def parse_command(kind: CommandType, body: object) -> Command:
    """The body of ``POST {commands}/{kind}``; raises OcpiError 2001 naming the field."""
    if not isinstance(body, Mapping):
        raise OcpiError.invalid("body", "a JSON object", body)
    url = _url(body, "response_url")
    if kind is CommandType.START_SESSION:
        evse_uid = _opt_ci(body, "evse_uid", 36)
        connector_id = _opt_ci(body, "connector_id", 36)
        if connector_id is not None and evse_uid is None:
            raise OcpiError.invalid("evse_uid", "an EVSE uid when connector_id is set", None)
        return StartSession(
            url,
            parse_token(body.get("token"), "token"),
            _ci(body, "location_id", 36),
            evse_uid,
            connector_id,
            _opt_ci(body, "authorization_reference", 36),
        )
    if kind is CommandType.STOP_SESSION:
        return StopSession(url, _ci(body, "session_id", 36))
    if kind is CommandType.UNLOCK_CONNECTOR:
        return UnlockConnector(
            url,
            _ci(body, "location_id", 36),
            _ci(body, "evse_uid", 36),
            _ci(body, "connector_id", 36),
        )
    if kind is CommandType.RESERVE_NOW:
        return ReserveNow(
            url,
            parse_token(body.get("token"), "token"),
            _datetime(body, "expiry_date"),
            _ci(body, "reservation_id", 36),
            _ci(body, "location_id", 36),
            _opt_ci(body, "evse_uid", 36),
            _opt_ci(body, "authorization_reference", 36),
        )
    return CancelReservation(url, _ci(body, "reservation_id", 36))


def parse_token(raw: object, where: str) -> CommandToken:
    if raw is None:
        raise OcpiError.missing(where)
    if not isinstance(raw, Mapping):
        raise OcpiError.invalid(where, "a Token object", raw)
    party = Party.parse(raw.get("country_code"), raw.get("party_id"), f"{where}.")
    uid = _ci(raw, "uid", 36, where)
    type_raw = raw.get("type")
    try:
        token_type = TokenType(type_raw) if isinstance(type_raw, str) else None
    except ValueError:
        token_type = None
    if token_type is None:
        if type_raw is None:
            raise OcpiError.missing(f"{where}.type")
        raise OcpiError.invalid(
            f"{where}.type", f"one of {', '.join(t.value for t in TokenType)}", type_raw
        )
    contract_id = _ci(raw, "contract_id", 36, where)
    if "valid" in raw and not isinstance(raw["valid"], bool):
        raise OcpiError.invalid(f"{where}.valid", "true or false", raw["valid"])
    whitelist = raw.get("whitelist")
    if whitelist is not None and (
        not isinstance(whitelist, str) or whitelist not in WHITELIST_TYPES
    ):
        raise OcpiError.invalid(
            f"{where}.whitelist", f"one of {', '.join(sorted(WHITELIST_TYPES))}", whitelist
        )
    return CommandToken(party, uid, token_type, contract_id)


def command_response(
    result: CommandResponseType, timeout_s: int, message: str = ""
) -> dict[str, object]:
    """The CommandResponse object (the envelope's data)."""
    body: dict[str, object] = {"result": result.value, "timeout": timeout_s}
    if message:
        body["message"] = [{"language": "en", "text": message[:512]}]
    return body


def command_result(result: CommandResultType, message: str = "") -> dict[str, object]:
    """The CommandResult object posted to response_url."""
    body: dict[str, object] = {"result": result.value}
    if message:
        body["message"] = [{"language": "en", "text": message[:512]}]
    return body


# --- field readers ------------------------------------------------------------------------
def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _ci(body: Mapping[str, object], key: str, most: int, where: str = "") -> str:
    value = body.get(key)
    if value is None:
        raise OcpiError.missing(_name(where, key))
    if not isinstance(value, str) or len(value) > most or not _PRINTABLE.fullmatch(value):
        raise OcpiError.invalid(
            _name(where, key), f"a string of 1 to {most} printable characters", value
        )
    return value


def _opt_ci(body: Mapping[str, object], key: str, most: int) -> str | None:
    return None if body.get(key) is None else _ci(body, key, most)


def _url(body: Mapping[str, object], key: str) -> str:
    value = _ci(body, key, URL_MAX)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OcpiError.invalid(key, "an http(s) URL", value)
    return value


def _datetime(body: Mapping[str, object], key: str) -> datetime:
    value = _ci(body, key, 64)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise OcpiError.invalid(key, "an RFC 3339 date-time", value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the spec's DateTime is UTC when unmarked
    return moment.astimezone(UTC)


__all__ = [
    "CancelReservation",
    "Command",
    "CommandResponseType",
    "CommandResultType",
    "CommandToken",
    "CommandType",
    "ReserveNow",
    "StartSession",
    "StopSession",
    "TokenType",
    "UnlockConnector",
    "command_response",
    "command_result",
    "command_type",
    "parse_command",
    "parse_token",
]
