"""OCPP-J 2.0.1 differences in the RPC framework: error code spelling and the "-1" reply.

2.0.1 renamed two CallError codes (FormationViolation -> FormatViolation, the misspelt
OccurenceConstraintViolation -> OccurrenceConstraintViolation) and added RpcFrameworkError
and MessageTypeNotSupported. A frame whose message id cannot be read is answered with
message id "-1" (OCPP-J 2.0.1 §4.2.3), and the connection stays up.
"""

from __future__ import annotations

from cpo_gateway.csms.frames import (
    CALL,
    CALL_ERROR,
    CALL_RESULT,
    ErrorCode,
    FrameError,
    encode_error,
)

UNREADABLE_ID = "-1"
RPC_FRAMEWORK_ERROR = "RpcFrameworkError"
MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
_RENAMED = {
    ErrorCode.FORMATION_VIOLATION.value: "FormatViolation",
    ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION.value: "OccurrenceConstraintViolation",
}


def error_code(code: str) -> str:
    """A 1.6 code as 2.0.1 spells it (codes 2.0.1 kept are returned as they are)."""
    return _RENAMED.get(str(code), str(code))


def encode_frame_error(error: FrameError) -> str | None:
    """The CallError answering a broken frame on a 2.0.1 connection, or None.

    As for 1.6, a broken CallResult or CallError is not answered (answering an answer could
    ping-pong). A frame whose message id cannot be read gets RpcFrameworkError with id "-1";
    an unknown message type id gets MessageTypeNotSupported."""
    if error.message_type in (CALL_RESULT, CALL_ERROR):
        return None
    details = error.details
    if error.unique_id is None:
        return encode_error(UNREADABLE_ID, RPC_FRAMEWORK_ERROR, error.description, details)
    code = error_code(error.error_code)
    if error.message_type is not None and error.message_type != CALL:
        code = MESSAGE_TYPE_NOT_SUPPORTED
    return encode_error(error.unique_id, code, error.description, details)
