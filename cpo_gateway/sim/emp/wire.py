"""OIOI v4 wire rules as the sandbox EMP applies them to what it receives.

Kept apart from the gateway's own OIOI package on purpose: the sandbox plays an independent
peer, so a misreading of the spec on the gateway side is not silently shared by its test peer.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson

INVALID_API_KEY = 210
INVALID_FORMAT = 230
SYSTEM_ERROR = 100
SUCCESS = 0

# Bodies above this are refused before parsing: a peer must not grow memory without bound.
MAX_BODY_BYTES = 1024 * 1024


class WireError(Exception):
    """A request-level failure: answered with `http_status` and `result.code`."""

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


def bad_request(message: str) -> WireError:
    return WireError(400, INVALID_FORMAT, message)


def check_authorization(header: str | None, api_key: str) -> None:
    """Accept only `Authorization: key=<api_key>`; anything else is 401 / 210."""
    if header is None:
        raise WireError(401, INVALID_API_KEY, "Authorization header missing")
    scheme, sep, presented = header.strip().partition("=")
    if not sep or scheme.strip().lower() != "key":
        raise WireError(401, INVALID_API_KEY, "Authorization: expected 'key=<api-key>'")
    # Constant time: the sandbox is also run as a demo peer reachable over the network.
    if not hmac.compare_digest(presented.strip().encode(), api_key.encode()):
        raise WireError(401, INVALID_API_KEY, "Invalid API key")


def parse_envelope(raw: bytes) -> tuple[str, dict[str, Any]]:
    """Split an OIOI request into (call name, call body).

    Raises WireError (400 / 230) for anything that is not a JSON object with exactly one
    top-level key whose value is an object.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise bad_request("body: larger than the limit")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("body: not valid UTF-8 JSON") from exc
    if not isinstance(doc, dict):
        raise bad_request("body: expected a JSON object")
    if len(doc) != 1:
        raise bad_request(f"body: expected exactly one top-level key, got {len(doc)}")
    ((call, body),) = doc.items()
    if not isinstance(body, dict):
        raise bad_request(f"{call}: expected an object")
    return call, body


def peek_call(raw: bytes) -> tuple[str, dict[str, Any]]:
    """Best-effort (call, body) for the record of a request that is answered before parsing."""
    try:
        return parse_envelope(raw)
    except WireError:
        return "", {}


def require_str(body: dict[str, Any], key: str, path: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{path}.{key}: expected a non-empty string, got {_show(value)}")
    return value


def require_obj(body: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise bad_request(f"{path}.{key}: expected an object, got {_show(value)}")
    return value


def result_body(code: int, message: str) -> bytes:
    return orjson.dumps({"result": {"code": code, "message": message}})


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
