"""Tolerant readers for fields of a decoded JSON payload.

Each reader takes the object, the path of that object (``"StartTransaction"``,
``"MeterValues.meterValue[0]"``) and the field name, and either returns the value or raises
PayloadError whose description reads ``<path>.<name>: expected <what>, got <value>``.
Paths are built only when an error is raised: the happy path stays cheap.

Rules shared by every parser: unknown extra fields are ignored; an optional field sent as
null counts as absent; a required field that is absent is an OccurenceConstraintViolation; a
value of the wrong JSON type is a TypeConstraintViolation; a value of the right type that
cannot be meant (a non-ISO timestamp, an integer outside 64 bits) is a
PropertyConstraintViolation.
"""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

from cpo_gateway.csms.frames import ErrorCode, PayloadError

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SHOW_MAX = 40
MAX_ID_TOKEN = 20  # OCPP 1.6 IdToken: CiString20Type


def show(value: object) -> str:
    """A short rendering of a received value for an error description."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def fail(code: ErrorCode, path: str, name: str, message: str) -> NoReturn:
    where = f"{path}.{name}" if name else path
    raise PayloadError(code, f"{where}: {message}", {"field": where})


def missing(path: str, name: str) -> NoReturn:
    fail(ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION, path, name, "required field is missing")


def wrong_type(path: str, name: str, expected: str, value: object) -> NoReturn:
    fail(ErrorCode.TYPE_CONSTRAINT_VIOLATION, path, name, f"expected {expected}, got {show(value)}")


def as_int(value: object, path: str, name: str) -> int:
    """An integer; a float with no fraction (12.0) is accepted: some firmwares send those."""
    if type(value) is int:
        result = value
    elif type(value) is float and value.is_integer():
        result = int(value)
    else:
        wrong_type(path, name, "integer", value)
    if not _INT64_MIN <= result <= _INT64_MAX:
        fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            path,
            name,
            f"expected a 64-bit integer, got {show(value)}",
        )
    return result


def req_int(obj: dict[str, object], path: str, name: str) -> int:
    if name not in obj:
        missing(path, name)
    return as_int(obj[name], path, name)


def opt_int(obj: dict[str, object], path: str, name: str) -> int | None:
    value = obj.get(name)
    return None if value is None else as_int(value, path, name)


def connector_id(obj: dict[str, object], path: str, name: str = "connectorId") -> int:
    value = req_int(obj, path, name)
    if value < 0:
        fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            path,
            name,
            f"expected a connector id >= 0, got {value}",
        )
    return value


def req_str(obj: dict[str, object], path: str, name: str, max_len: int | None = None) -> str:
    """A string, cut to max_len when given: over-long vendor strings are kept, not refused."""
    if name not in obj:
        missing(path, name)
    value = obj[name]
    if not isinstance(value, str):
        wrong_type(path, name, "string", value)
    return value if max_len is None else value[:max_len]


def id_token(obj: dict[str, object], path: str, name: str = "idTag") -> str:
    """A required idTag, exactly as sent: a CiString20 (OCPP 1.6 IdToken). Unlike vendor
    strings it is never cut: a cut token is another card."""
    value = req_str(obj, path, name)
    if len(value) > MAX_ID_TOKEN:
        too_long(path, name, value)
    return value


def too_long(path: str, name: str, value: str) -> NoReturn:
    fail(
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        path,
        name,
        f"expected at most {MAX_ID_TOKEN} characters, got {len(value)}",
    )


def opt_str(obj: dict[str, object], path: str, name: str, max_len: int | None = None) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        wrong_type(path, name, "string", value)
    return value if max_len is None else value[:max_len]


def as_timestamp(value: object, path: str, name: str) -> str:
    """The timestamp exactly as sent, once it is known to parse as ISO 8601."""
    if not isinstance(value, str):
        wrong_type(path, name, "ISO 8601 date-time string", value)
    if not is_iso_datetime(value):
        fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            path,
            name,
            f"expected ISO 8601 date-time, got {show(value)}",
        )
    return value


def is_iso_datetime(value: str) -> bool:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def req_timestamp(obj: dict[str, object], path: str, name: str = "timestamp") -> str:
    if name not in obj:
        missing(path, name)
    return as_timestamp(obj[name], path, name)


def opt_timestamp(obj: dict[str, object], path: str, name: str = "timestamp") -> str | None:
    value = obj.get(name)
    return None if value is None else as_timestamp(value, path, name)


def req_list(obj: dict[str, object], path: str, name: str) -> list[object]:
    if name not in obj:
        missing(path, name)
    value = obj[name]
    if not isinstance(value, list):
        wrong_type(path, name, "array", value)
    return value


def as_object(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        wrong_type(path, "", "object", value)
    return value
