"""OCPP-J CallError codes, per version: one kind of problem, each version's spelling.

OCPP-J 1.6 kept two misspellings for compatibility (its errata sheet, "known issues that will
not be fixed"): FormationViolation and OccurenceConstraintViolation. OCPP-J 2.0.1 renamed both:
FormatViolation and OccurrenceConstraintViolation (as the `ocpp` package's v201 and the
npm ocpp-rpc client answer on a 2.0.1 connection, and read from a central system); it also
added RpcFrameworkError, the answer to a frame
whose message id cannot be read (message id "-1"), and MessageTypeNotSupported. 1.6 answers
such a frame with GenericError.

Code of either side names a Problem and asks the table of its connection's version for the
string, so the 1.6 and the 2.0.1 paths share the parsers' and the schemas' classification.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Problem(StrEnum):
    """What went wrong, independent of how a version spells its CallError code."""

    NOT_IMPLEMENTED = "not_implemented"  # action not known by the receiver
    NOT_SUPPORTED = "not_supported"  # action recognised but not supported
    INTERNAL = "internal"
    PROTOCOL = "protocol"  # payload or frame incomplete
    SECURITY = "security"
    FORMAT = "format"  # syntactically wrong, or not the PDU's structure
    PROPERTY = "property"  # a member's value is not allowed
    OCCURRENCE = "occurrence"  # a member missing, or too few / many items
    TYPE = "type"  # a member of the wrong JSON type
    GENERIC = "generic"
    UNREADABLE_ID = "unreadable_id"  # no message id to answer: answered with "-1"
    MESSAGE_TYPE = "message_type"  # a message type id other than 2, 3, 4


_COMMON = {
    Problem.NOT_IMPLEMENTED: "NotImplemented",
    Problem.NOT_SUPPORTED: "NotSupported",
    Problem.INTERNAL: "InternalError",
    Problem.PROTOCOL: "ProtocolError",
    Problem.SECURITY: "SecurityError",
    Problem.PROPERTY: "PropertyConstraintViolation",
    Problem.OCCURRENCE: "OccurenceConstraintViolation",
    Problem.TYPE: "TypeConstraintViolation",
    Problem.GENERIC: "GenericError",
}
CODES: Mapping[str, Mapping[Problem, str]] = MappingProxyType(
    {
        "1.6": MappingProxyType(
            {
                **_COMMON,
                Problem.FORMAT: "FormationViolation",
                Problem.UNREADABLE_ID: "GenericError",
                Problem.MESSAGE_TYPE: "ProtocolError",  # 1.6 has no finer code
            }
        ),
        "2.0.1": MappingProxyType(
            {
                **_COMMON,
                Problem.FORMAT: "FormatViolation",
                Problem.OCCURRENCE: "OccurrenceConstraintViolation",
                Problem.UNREADABLE_ID: "RpcFrameworkError",
                Problem.MESSAGE_TYPE: "MessageTypeNotSupported",
            }
        ),
    }
)
UNREADABLE_ID = "-1"  # the message id of the CallError answering a frame without a readable one


def codes_for(version: str) -> Mapping[Problem, str]:
    """The CallError codes of `version` ("1.6" or "2.0.1"), by problem."""
    try:
        return CODES[version]
    except KeyError:
        raise ValueError(f"unknown OCPP version {version!r}; known: {', '.join(CODES)}") from None


_BY_1_6_CODE = {code: problem for problem, code in CODES["1.6"].items()}
_BY_1_6_CODE["GenericError"] = Problem.GENERIC
_BY_1_6_CODE["ProtocolError"] = Problem.PROTOCOL


def respell(code_1_6: str, version: str) -> str:
    """A 1.6 code (what the 1.6 parsers raise) as `version` spells it; unknown codes as given."""
    problem = _BY_1_6_CODE.get(str(code_1_6))
    return str(code_1_6) if problem is None else codes_for(version)[problem]
