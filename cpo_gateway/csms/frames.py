"""OCPP-J 1.6 frames: the RPC envelope around every message, without I/O.

A frame is a JSON array: ``[2, uniqueId, action, payload]`` (Call),
``[3, uniqueId, payload]`` (CallResult) or
``[4, uniqueId, errorCode, errorDescription, errorDetails]`` (CallError).

How a broken frame is classified (OCPP-J 1.6 §4.2.3 has no finer rule; the codes are chosen by
their definitions there):

==========================================================  ======================  =========
problem                                                     error code              unique id
==========================================================  ======================  =========
not JSON, not an array, empty array                         FormationViolation      None
message type id not an integer                              FormationViolation      if read
unique id not a string, or longer than 36 characters        FormationViolation      None / kept
message type id an integer other than 2, 3, 4               ProtocolError           if read
fewer elements than the message type needs ("incomplete")   ProtocolError           if read
more elements than the message type allows                  FormationViolation      kept
action / error code / description not a string              FormationViolation      kept
payload / error details not an object                       FormationViolation      kept
==========================================================  ======================  =========

An over-long unique id is kept on the error so that the server can still answer with the id
the charger will match on. A frame whose unique id cannot be read at all is answered with the
message id "-1" (OCPP-J 2.0.1 §4.2.3, and the same for 1.6): GenericError in 1.6,
RpcFrameworkError in 2.0.1. The codes above are 1.6's spelling; encode_frame_error spells
them for the connection's version (codes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import orjson

from cpo_gateway.csms.codes import UNREADABLE_ID, Problem, codes_for, respell

MAX_UNIQUE_ID = 36
CALL, CALL_RESULT, CALL_ERROR = 2, 3, 4
_FRAME_LENGTH = {CALL: 4, CALL_RESULT: 3, CALL_ERROR: 5}


class ErrorCode(StrEnum):
    """CallError codes as OCPP-J 1.6 spells them (2.0.1 renamed two of them)."""

    NOT_IMPLEMENTED = "NotImplemented"  # action not known by the receiver
    NOT_SUPPORTED = "NotSupported"  # action recognised but not supported by the receiver
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"  # payload incomplete
    SECURITY_ERROR = "SecurityError"
    FORMATION_VIOLATION = "FormationViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, object]


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, object]


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    error_code: str  # as the peer sent it: not checked against ErrorCode
    description: str
    details: dict[str, object] = field(default_factory=dict)


Frame = Call | CallResult | CallError


class MessageError(Exception):
    """Base of the two errors below: what a CallError answering the message would carry."""

    def __init__(
        self, error_code: ErrorCode, description: str, details: dict[str, object] | None = None
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.details: dict[str, object] = details if details is not None else {}


class FrameError(MessageError):
    """A frame that is not a valid OCPP-J message.

    unique_id is None when the frame is too broken to read one; message_type is the message
    type id when it could be read (a server answers CallErrors only to Calls).
    """

    def __init__(
        self,
        unique_id: str | None,
        error_code: ErrorCode,
        description: str,
        details: dict[str, object] | None = None,
        message_type: int | None = None,
        problem: Problem | None = None,
    ) -> None:
        super().__init__(error_code, description, details)
        self.unique_id = unique_id
        self.message_type = message_type
        self.problem = problem  # set where the versions' codes differ by more than spelling


class PayloadError(MessageError):
    """A Call payload that does not fit its action.

    Raised by the payload parsers, which never see the frame: the unique id comes from the
    Call (see with_unique_id). description names the field path, what was expected and what
    was found; details carries the path under "field".
    """

    def with_unique_id(self, unique_id: str) -> FrameError:
        return FrameError(unique_id, self.error_code, self.description, self.details, CALL)


def _frame_error(
    unique_id: str | None, code: ErrorCode, description: str, message_type: int | None = None
) -> FrameError:
    return FrameError(unique_id, code, description, None, message_type)


def parse_frame(data: str | bytes) -> Frame:
    """Decode one websocket message. Raises FrameError, and nothing else, for any input."""
    try:
        msg = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise _frame_error(
            None, ErrorCode.FORMATION_VIOLATION, f"frame is not JSON: {exc}"
        ) from None
    if not isinstance(msg, list) or not msg:
        raise _frame_error(
            None, ErrorCode.FORMATION_VIOLATION, "frame is not a non-empty JSON array"
        )
    type_id = msg[0]
    uid = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else None
    if type(type_id) is not int:  # bool is an int subclass: reject true/false too
        raise _frame_error(uid, ErrorCode.FORMATION_VIOLATION, "message type id is not an integer")
    expected = _FRAME_LENGTH.get(type_id)
    if expected is None:
        raise FrameError(
            uid,
            ErrorCode.PROTOCOL_ERROR,
            f"message type id {type_id} is not 2, 3 or 4",
            None,
            type_id,
            Problem.MESSAGE_TYPE,
        )
    if len(msg) < 2 or not isinstance(msg[1], str):
        raise _frame_error(
            None, ErrorCode.FORMATION_VIOLATION, "unique id is not a string", type_id
        )
    assert uid is not None
    if len(uid) > MAX_UNIQUE_ID:
        raise _frame_error(
            uid,
            ErrorCode.FORMATION_VIOLATION,
            f"unique id is {len(uid)} characters, at most {MAX_UNIQUE_ID} allowed",
            type_id,
        )
    if len(msg) != expected:
        code = ErrorCode.PROTOCOL_ERROR if len(msg) < expected else ErrorCode.FORMATION_VIOLATION
        raise _frame_error(
            uid,
            code,
            f"message type {type_id} needs {expected} elements, got {len(msg)}",
            type_id,
        )
    if type_id == CALL:
        action, payload = msg[2], msg[3]
        if not isinstance(action, str):
            raise _frame_error(uid, ErrorCode.FORMATION_VIOLATION, "action is not a string", CALL)
        if not isinstance(payload, dict):
            raise _frame_error(
                uid, ErrorCode.FORMATION_VIOLATION, f"{action}: payload is not an object", CALL
            )
        return Call(uid, action, payload)
    if type_id == CALL_RESULT:
        payload = msg[2]
        if not isinstance(payload, dict):
            raise _frame_error(
                uid, ErrorCode.FORMATION_VIOLATION, "payload is not an object", CALL_RESULT
            )
        return CallResult(uid, payload)
    code_, description, details = msg[2], msg[3], msg[4]
    if not isinstance(code_, str) or not isinstance(description, str):
        raise _frame_error(
            uid,
            ErrorCode.FORMATION_VIOLATION,
            "error code and description must be strings",
            CALL_ERROR,
        )
    if not isinstance(details, dict):
        raise _frame_error(
            uid, ErrorCode.FORMATION_VIOLATION, "error details is not an object", CALL_ERROR
        )
    return CallError(uid, code_, description, details)


def encode_call(unique_id: str, action: str, payload: dict[str, object]) -> str:
    return orjson.dumps([CALL, unique_id, action, payload]).decode()


def encode_result(unique_id: str, payload: dict[str, object]) -> str:
    return orjson.dumps([CALL_RESULT, unique_id, payload]).decode()


def encode_error(
    unique_id: str, error_code: str, description: str, details: dict[str, object] | None = None
) -> str:
    return orjson.dumps(
        [CALL_ERROR, unique_id, str(error_code), description, details or {}]
    ).decode()


def encode_frame_error(error: FrameError, version: str = "1.6") -> str | None:
    """The CallError answering a broken frame, or None when it must not be answered.

    None to a broken CallResult or CallError: OCPP-J answers only Calls, and answering an
    answer could ping-pong between the peers. A frame without a readable unique id (not JSON,
    not an array, no string id) gets message id "-1" and the version's code for it; any
    other gets its code in the version's spelling.
    """
    if error.message_type in (CALL_RESULT, CALL_ERROR):
        return None
    if error.unique_id is None:
        code = codes_for(version)[Problem.UNREADABLE_ID]
        return encode_error(UNREADABLE_ID, code, error.description, error.details)
    if error.problem is not None:
        code = codes_for(version)[error.problem]
    else:
        code = respell(error.error_code, version)
    return encode_error(error.unique_id, code, error.description, error.details)
