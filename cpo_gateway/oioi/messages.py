"""OIOI requests the gateway serves (session-start, session-stop, rfid-post): envelope and
field validation into typed requests, and the response bodies. No I/O.

Every validation failure is an ``OioiError`` (400/230) whose message names the JSON path, what
was expected and what was found. Unknown extra fields are ignored (tolerant reader).

The outbound renderers and the readers of EMP replies live in ``render`` and ``replies``; they
are re-exported here so the server and the client import one module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from cpo_gateway.bridge.ids import UID_LENGTHS, InvalidUid, normalise_uid
from cpo_gateway.bridge.model import Outcome, User, UserKind
from cpo_gateway.oioi import codes
from cpo_gateway.oioi.render import (
    render_cdr,
    render_rfid_verify,
    render_station_post,
    render_status,
)
from cpo_gateway.oioi.replies import parse_retry_after, read_delivery, read_verify

__all__ = [
    "SUPPORTED_CALLS",
    "OioiError",
    "RfidPostRequest",
    "SessionStartRequest",
    "SessionStopRequest",
    "error_body",
    "json_type",
    "outcome_response",
    "parse_envelope",
    "parse_retry_after",
    "parse_rfid_post",
    "parse_session_start",
    "parse_session_stop",
    "read_delivery",
    "read_verify",
    "render_cdr",
    "render_rfid_verify",
    "render_station_post",
    "render_status",
    "success_body",
]

SUPPORTED_CALLS = ("session-start", "session-stop", "rfid-post")

_SHOWN_KEYS = 10  # top-level keys named in an envelope error
_SHOWN_UIDS = 10  # offending rfids named in an rfid-post error
_SHOWN_CHARS = 40  # a peer's string is cut to this length when quoted back
_DETAIL_CHARS = 200  # the cause added to a business error's message
# OIOI's identifier types (a contract id of another protocol is not one of them).
_USER_KINDS = {k.value: k for k in (UserKind.EVCO_ID, UserKind.RFID, UserKind.USERNAME)}
_USER_KINDS_TEXT = ", ".join(_USER_KINDS)
_BOM = b"\xef\xbb\xbf"


class OioiError(Exception):
    """A request-level failure: the HTTP status, the OIOI result code and a safe message."""

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"OioiError({self.http_status}, {self.code}, {self.message!r})"

    @classmethod
    def bad_request(cls, message: str) -> OioiError:
        return cls(400, codes.INVALID_FORMAT, message)

    @classmethod
    def unauthorized(cls, message: str) -> OioiError:
        return cls(401, codes.INVALID_API_KEY, message)

    @classmethod
    def forbidden(cls, message: str) -> OioiError:
        return cls(403, codes.NOT_ALLOWED, message)

    @classmethod
    def internal(cls) -> OioiError:
        # Never carries details: they belong in the log, not in a peer's hands.
        return cls(500, codes.SYSTEM_ERROR, "Internal server error.")

    @classmethod
    def unavailable(cls) -> OioiError:
        """503: the gateway cannot take requests now (starting or stopping)."""
        return cls(503, codes.SYSTEM_ERROR, "Service temporarily unavailable.")

    def body(self) -> dict[str, object]:
        return error_body(self.code, self.message)


@dataclass(frozen=True, slots=True)
class SessionStartRequest:
    user: User
    evse_id: str
    payment_reference: str | None


@dataclass(frozen=True, slots=True)
class SessionStopRequest:
    user: User
    evse_id: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class RfidPostRequest:
    partner_identifier: str
    uids: list[str]  # normalised, de-duplicated, in first-seen order
    submitted: int  # entries in the request, duplicates included


# --- responses ------------------------------------------------------------------------------
def success_body(extra: Mapping[str, object] | None = None) -> dict[str, object]:
    body: dict[str, object] = dict(extra) if extra else {}
    body["result"] = {"code": codes.SUCCESS, "message": "Success."}
    return body


def error_body(code: int, message: str) -> dict[str, object]:
    return {"result": {"code": code, "message": message}}


def outcome_response(
    outcome: Outcome, extra: Mapping[str, object] | None = None, detail: str = ""
) -> tuple[int, dict[str, object]]:
    """HTTP status and body for a business outcome; ``extra`` is only sent on success.

    An error's message is the code's description, then the core's ``detail`` (the cause the
    code alone hides: "EVSE error: the charger is offline."), one line of printable text cut
    to ``_DETAIL_CHARS``. The core's details are its own sentences quoting at most the
    peer's own input, never an exception or a secret."""
    http_status, code = codes.OUTCOME_CODES[outcome]
    if codes.is_success(code):
        return http_status, success_body(extra)
    message = codes.describe(code)
    cause = _one_line(detail)
    if cause:
        message = f"{message}: {cause}"
    return http_status, error_body(code, message + ".")


def _one_line(text: str) -> str:
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split()).rstrip(".")
    if len(cleaned) > _DETAIL_CHARS:
        return cleaned[: _DETAIL_CHARS - 3] + ".."  # the sentence's own full stop makes three
    return cleaned


# --- helpers for messages -------------------------------------------------------------------
def json_type(value: object) -> str:
    """The JSON name of a decoded value's type (bool before int: bool is an int in Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shown(text: str) -> str:
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "..."
    return repr(text)


def _found(value: object) -> str:
    """What a peer sent, for a message: strings quoted (cut short), other values by type."""
    return _shown(value) if isinstance(value, str) else json_type(value)


def _fail(path: str, expected: str, found: str) -> OioiError:
    return OioiError.bad_request(f"{path}: expected {expected}, got {found}")


_MISSING = "nothing (the field is missing)"


# --- envelope -------------------------------------------------------------------------------
def parse_envelope(body: bytes) -> tuple[str, dict[str, object]]:
    """The call name and its object. Raises only OioiError, whatever the bytes."""
    if body.startswith(_BOM):  # some HTTP stacks prepend one; it is not part of the JSON
        body = body[len(_BOM) :]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OioiError.bad_request(f"body is not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail("body", "a JSON object", json_type(doc))
    if len(doc) != 1:
        raise OioiError.bad_request(
            f"expected exactly one top-level key, got {len(doc)}{_key_list(doc)}"
        )
    ((call, payload),) = doc.items()
    if call not in SUPPORTED_CALLS:
        raise OioiError.bad_request(
            f"unsupported call {_shown(call)}; supported calls: {', '.join(SUPPORTED_CALLS)}"
        )
    if not isinstance(payload, dict):
        raise _fail(call, "an object", json_type(payload))
    return call, payload


def _key_list(doc: dict[str, object]) -> str:
    if not doc:
        return ""
    names = [key[:_SHOWN_CHARS] for key in list(doc)[:_SHOWN_KEYS]]
    more = ", ..." if len(doc) > _SHOWN_KEYS else ""
    return ": " + ", ".join(names) + more


# --- fields ---------------------------------------------------------------------------------
def _object(obj: Mapping[str, object], key: str, path: str) -> dict[str, object]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise _fail(f"{path}.{key}", "an object", _MISSING if key not in obj else _found(value))
    return value


def _string(obj: Mapping[str, object], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", "a string", _MISSING if key not in obj else _found(value))
    if not value:
        raise _fail(f"{path}.{key}", "a non-empty string", "''")
    return value


def _optional_string(obj: Mapping[str, object], key: str, path: str) -> str | None:
    """A string, or None when absent, null or empty (peers use all three for "not given")."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", "a string or null", _found(value))
    return value


def _user(obj: Mapping[str, object], path: str) -> User:
    user = _object(obj, "user", path)
    path = f"{path}.user"
    kind_value = user.get("identifier-type")
    # Case is forgiven: vendors send "EVCO-ID"; the stored kind is always the canonical one.
    kind = _USER_KINDS.get(kind_value.lower()) if isinstance(kind_value, str) else None
    if kind is None:
        found = _MISSING if "identifier-type" not in user else _found(kind_value)
        raise _fail(f"{path}.identifier-type", f"one of {_USER_KINDS_TEXT}", found)
    return User(kind=kind, identifier=_string(user, "identifier", path))


# --- calls ----------------------------------------------------------------------------------
def parse_session_start(obj: Mapping[str, object]) -> SessionStartRequest:
    path = "session-start"
    return SessionStartRequest(
        user=_user(obj, path),
        # Not checked against the EVSE ID pattern: an unknown EVSE is the business answer 181.
        evse_id=_string(obj, "connector-id", path),
        payment_reference=_optional_string(obj, "payment-reference", path),
    )


def parse_session_stop(obj: Mapping[str, object]) -> SessionStopRequest:
    path = "session-stop"
    return SessionStopRequest(
        user=_user(obj, path),
        evse_id=_string(obj, "connector-id", path),
        session_id=_optional_string(obj, "session-id", path),
    )


def parse_rfid_post(obj: Mapping[str, object]) -> RfidPostRequest:
    """The whitelist for one partner; one bad entry rejects the whole list.

    A partial whitelist would silently lock out cards the EMP believes are active, so the
    request is refused and the EMP told which entries to fix.
    """
    path = "rfid-post"
    partner = _string(obj, "partner-identifier", path)
    rfids = obj.get("rfids")
    if not isinstance(rfids, list):
        found = _MISSING if "rfids" not in obj else _found(rfids)
        raise _fail(f"{path}.rfids", "an array of strings", found)
    uids, bad = _normalise_all(rfids)
    if bad:
        shown = ", ".join(f"[{i}] {_found(rfids[i])}" for i in bad[:_SHOWN_UIDS])
        more = f" (first {_SHOWN_UIDS} shown)" if len(bad) > _SHOWN_UIDS else ""
        raise OioiError.bad_request(
            f"{path}.rfids: expected hex UIDs of 1 to 20 characters, got {len(bad)} invalid "
            f"{'entry' if len(bad) == 1 else 'entries'}{more}: {shown}"
        )
    return RfidPostRequest(partner_identifier=partner, uids=uids, submitted=len(rfids))


_UID_LENGTHS = frozenset(UID_LENGTHS)
_UPPER_HEX = frozenset("0123456789ABCDEF")


def _normalise_all(rfids: list[object]) -> tuple[list[str], list[int]]:
    """Normalised UIDs in first-seen order without duplicates, and the indexes of bad entries.

    Hot loop (a whitelist may hold a million cards): locals only, a dict keeps order and
    de-duplicates in one step, exceptions only on the rare bad entry.
    """
    seen: dict[str, None] = {}
    bad: list[int] = []
    normalise = normalise_uid
    add_bad = bad.append
    lengths = _UID_LENGTHS
    upper_hex = _UPPER_HEX
    for index, raw in enumerate(rfids):
        if type(raw) is str:
            if len(raw) in lengths and upper_hex.issuperset(raw):
                # Already normalised (as the spec asks senders to): keep the parsed string
                # itself, so a million-UID list is not held twice.
                seen[raw] = None
                continue
            try:
                seen[normalise(raw)] = None
                continue
            except InvalidUid:
                pass
        add_bad(index)
    return list(seen), bad
