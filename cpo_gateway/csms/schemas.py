"""The OCA JSON schemas of OCPP 1.6 (with its security extension) and 2.0.1, as validators.

The schemas are the ones the `ocpp` package ships (ocpp/v16/schemas, ocpp/v201/schemas): the
1.6 core ones are draft-04, the 1.6 security extension and 2.0.1 ones draft-06. They are
compiled with fastjsonschema, once per process and version, into Python functions: checking a
Heartbeat or a StatusNotification costs a few microseconds, several times less than the
`jsonschema` validator the `ocpp` package itself uses (scripts/bench, the schemas scenario,
prints both). Defaults in the schemas are never filled in: a check must not change what the
charger sent.

A problem is reported as the first one the validator meets, with the JSON path of the member
("meterValue[0].timestamp"), a short message and the OCPP-J CallError code of that version
(codes.py). Which code a broken rule gets follows the CallError definitions of OCPP-J:
a missing member or too few / too many items is an occurrence constraint, a JSON type that
is not the schema's a type constraint, a member the schema does not know (the PDU's
structure) a format violation, and a value of the right type that the schema does not allow
(enum, length, format, range) a property constraint.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass
from typing import Any

import fastjsonschema

from cpo_gateway.csms.codes import Problem, codes_for

VERSIONS = {"1.6": "v16", "2.0.1": "v201"}
_REQUEST_SUFFIX = {"1.6": "", "2.0.1": "Request"}
_SHOW_ENUM = 6  # enum values named in a message; the rest are "..."

# fastjsonschema rule -> the kind of problem (see the module docstring).
_KIND = {
    "required": Problem.OCCURRENCE,
    "minItems": Problem.OCCURRENCE,
    "maxItems": Problem.OCCURRENCE,
    "type": Problem.TYPE,
    "additionalProperties": Problem.FORMAT,
    "additionalItems": Problem.FORMAT,
}


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """Why a payload does not fit its schema: the first broken rule."""

    field: str  # JSON path of the offending member ("idTagInfo.status"); "" = the payload
    message: str  # short and human: "is required", "must be one of Accepted, Blocked, ..."
    error_code: str  # the OCPP-J CallError code for this problem in this version

    @property
    def description(self) -> str:
        """The CallError description: the field first, as every error of the gateway does."""
        return f"{self.field or 'payload'} {self.message}"


Validator = Any  # a compiled fastjsonschema function: (data) -> data, raises on a problem


def schema_files(version: str) -> dict[str, dict[str, Any]]:
    """File stem ("BootNotification", "BootNotificationResponse") -> the decoded schema."""
    folder = importlib.resources.files("ocpp").joinpath(VERSIONS[version], "schemas")
    schemas: dict[str, dict[str, Any]] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            # Some releases of the 2.0 schemas start with a byte order mark.
            schemas[entry.name[:-5]] = json.loads(entry.read_text(encoding="utf-8-sig"))
    return schemas


class SchemaSet:
    """The compiled request and response schemas of one OCPP version."""

    __slots__ = ("_calls", "_codes", "_raw_calls", "_raw_results", "_results", "_version")

    def __init__(self, version: str) -> None:
        if version not in VERSIONS:
            raise ValueError(f"unknown OCPP version {version!r}; known: {', '.join(VERSIONS)}")
        self._version = version
        self._codes = codes_for(version)
        suffix = _REQUEST_SUFFIX[version]
        files = schema_files(version)
        self._raw_calls: dict[str, dict[str, Any]] = {}
        self._raw_results: dict[str, dict[str, Any]] = {}
        for stem, schema in files.items():
            if stem.endswith("Response"):
                self._raw_results[stem[: -len("Response")]] = schema
            elif stem.endswith(suffix):
                self._raw_calls[stem[: len(stem) - len(suffix)]] = schema
        self._calls = {a: _compile(s) for a, s in self._raw_calls.items()}
        self._results = {a: _compile(s) for a, s in self._raw_results.items()}

    @classmethod
    def load(cls, version: str) -> SchemaSet:
        """The schemas of `version` ("1.6" or "2.0.1"), compiled once per process."""
        return _load(version)

    @property
    def version(self) -> str:
        return self._version

    def actions(self) -> frozenset[str]:
        """Actions that have a request schema."""
        return frozenset(self._calls)

    def request_schema(self, action: str) -> dict[str, Any]:
        """The decoded request schema of `action` (for generators and normalisers); KeyError
        when the version has no such action."""
        return self._raw_calls[action]

    def response_schema(self, action: str) -> dict[str, Any]:
        return self._raw_results[action]

    def check_call(self, action: str, payload: object) -> SchemaProblem | None:
        """The problem of a Call's payload, or None when it fits the action's request schema.
        An action without a schema is a problem of the payload itself."""
        return self._check(self._calls, action, payload)

    def check_result(self, action: str, payload: object) -> SchemaProblem | None:
        """The problem of a CallResult's payload to `action`, or None when it fits."""
        return self._check(self._results, action, payload)

    def _check(
        self, table: dict[str, Validator], action: str, payload: object
    ) -> SchemaProblem | None:
        validate = table.get(action)
        if validate is None:
            return SchemaProblem(
                "",
                f"has no schema: {action[:64]} is not an OCPP {self._version} action",
                self._codes[Problem.NOT_IMPLEMENTED],
            )
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            return self._problem(exc)
        return None

    def _problem(self, exc: fastjsonschema.JsonSchemaValueException) -> SchemaProblem:
        path = _path(exc.name or "data")
        rule = exc.rule or ""
        kind = _KIND.get(rule, Problem.PROPERTY)
        definition = exc.rule_definition
        value = exc.value
        if rule == "required" and isinstance(value, dict) and isinstance(definition, list):
            absent = next((m for m in definition if m not in value), "")
            return SchemaProblem(_join(path, str(absent)), "is required", self._codes[kind])
        if rule == "additionalProperties" and isinstance(value, dict):
            known = exc.definition.get("properties", {}) if exc.definition else {}
            extra = next((m for m in value if m not in known), "")
            return SchemaProblem(_join(path, str(extra)), "is not allowed", self._codes[kind])
        return SchemaProblem(path, _message(rule, definition, exc.message), self._codes[kind])


@functools.cache
def _load(version: str) -> SchemaSet:
    return SchemaSet(version)


def _compile(schema: dict[str, Any]) -> Validator:
    return fastjsonschema.compile(schema, use_default=False)


def _path(name: str) -> str:
    """fastjsonschema names "data.meterValue[0].timestamp": the path without "data"."""
    if name == "data":
        return ""
    return name[5:] if name.startswith("data.") else name[4:] if name.startswith("data") else name


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _message(rule: str, definition: object, fallback: str) -> str:
    if rule == "type":
        kinds = definition if isinstance(definition, list) else [definition]
        return "must be " + " or ".join(_TYPE_NAMES.get(str(k), str(k)) for k in kinds)
    if rule == "enum" and isinstance(definition, list):
        shown = ", ".join(str(v) for v in definition[:_SHOW_ENUM])
        return f"must be one of {shown}{', ...' if len(definition) > _SHOW_ENUM else ''}"
    if rule == "maxLength":
        return f"must be at most {definition} characters"
    if rule == "minLength":
        return f"must be at least {definition} characters"
    if rule in ("minItems", "maxItems"):
        most = "least" if rule == "minItems" else "most"
        return f"must have at {most} {definition} item{'' if definition == 1 else 's'}"
    if rule == "minimum":
        return f"must be at least {definition}"
    if rule == "maximum":
        return f"must be at most {definition}"
    if rule == "format":
        return f"must be a {definition} string" + (
            " (RFC 3339, with an offset or Z)" if definition == "date-time" else ""
        )
    if rule == "multipleOf":
        return f"must be a multiple of {definition}"
    # Any other rule: fastjsonschema's own sentence, without its "data." prefix.
    return fallback.split(" ", 1)[1] if fallback.startswith("data") else fallback
