"""OCPP 1.6 commands the central system sends to a charger, and reading the charger's answers.

Builders take values the gateway owns (already normalised), so a value that breaks the 1.6
schema is a bug on this side: they raise ValueError rather than send it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cpo_gateway.bridge.model import AuthStatus, CommandResult, CommandStatus
from cpo_gateway.csms.fields import show
from cpo_gateway.csms.frames import CallError, ErrorCode

MAX_ID_TAG = 20

_STATUS = {
    "Accepted": CommandStatus.ACCEPTED,
    "Unlocked": CommandStatus.ACCEPTED,
    # The change will happen, just later: ChangeAvailability during a transaction, and
    # ChangeConfiguration of a key read at boot. The raw status stays in data and detail.
    "Scheduled": CommandStatus.ACCEPTED,
    "RebootRequired": CommandStatus.ACCEPTED,
    "Rejected": CommandStatus.REJECTED,
    "UnlockFailed": CommandStatus.REJECTED,
    "Failed": CommandStatus.REJECTED,
    "VersionMismatch": CommandStatus.REJECTED,
    "NotSupported": CommandStatus.NOT_SUPPORTED,
    "NotImplemented": CommandStatus.NOT_SUPPORTED,
    "NotFound": CommandStatus.REJECTED,  # DeleteCertificate, GetInstalledCertificateIds
    # ReserveNow: the EVSE cannot be reserved for what it is doing now.
    "Occupied": CommandStatus.OCCUPIED,
    "Faulted": CommandStatus.INOPERATIVE,
    "Unavailable": CommandStatus.INOPERATIVE,
}
_DETAIL_STATUSES = frozenset({"Scheduled", "RebootRequired", "VersionMismatch", "UnlockFailed"})


def _id_tag(id_tag: str) -> str:
    if not id_tag or len(id_tag) > MAX_ID_TAG:
        raise ValueError(f"idTag must be 1 to {MAX_ID_TAG} characters, got {id_tag!r}")
    return id_tag


def remote_start_req(connector_id: int | None, id_tag: str) -> dict[str, object]:
    """connector_id None lets the charger choose (connectorId is optional in 1.6)."""
    req: dict[str, object] = {"idTag": _id_tag(id_tag)}
    if connector_id is not None:
        req["connectorId"] = connector_id
    return req


def remote_stop_req(transaction_id: int) -> dict[str, object]:
    return {"transactionId": transaction_id}


def send_local_list_req(
    version: int, entries: Iterable[tuple[str, AuthStatus]], update_type: str = "Full"
) -> dict[str, object]:
    if update_type not in ("Full", "Differential"):
        raise ValueError(f"updateType must be Full or Differential, got {update_type!r}")
    return {
        "listVersion": version,
        "updateType": update_type,
        "localAuthorizationList": [
            {"idTag": _id_tag(tag), "idTagInfo": {"status": AuthStatus(status).value}}
            for tag, status in entries
        ],
    }


def get_local_list_version_req() -> dict[str, object]:
    return {}


TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    }
)


def trigger_message_req(
    requested_message: str, connector_id: int | None = None
) -> dict[str, object]:
    if requested_message not in TRIGGERABLE:
        raise ValueError(
            f"requestedMessage must be one of {', '.join(sorted(TRIGGERABLE))}, "
            f"got {requested_message!r}"
        )
    req: dict[str, object] = {"requestedMessage": requested_message}
    if connector_id is not None:
        req["connectorId"] = connector_id
    return req


def change_availability_req(connector_id: int, type_: str) -> dict[str, object]:
    if type_ not in ("Inoperative", "Operative"):
        raise ValueError(f"type must be Inoperative or Operative, got {type_!r}")
    return {"connectorId": connector_id, "type": type_}


def reset_req(type_: str) -> dict[str, object]:
    if type_ not in ("Hard", "Soft"):
        raise ValueError(f"type must be Hard or Soft, got {type_!r}")
    return {"type": type_}


def unlock_connector_req(connector_id: int) -> dict[str, object]:
    return {"connectorId": connector_id}


MAX_RESERVATION_ID = 2_147_483_647  # reservationId is a (signed 32-bit) integer


def reserve_now_req(
    connector_id: int, expiry_date: str, id_tag: str, reservation_id: int
) -> dict[str, object]:
    """connector_id 0 reserves any connector of the charger; expiry_date is RFC 3339."""
    if connector_id < 0:
        raise ValueError(f"connectorId must be 0 or more, got {connector_id}")
    if not 0 <= reservation_id <= MAX_RESERVATION_ID:
        raise ValueError(f"reservationId must be 0 to {MAX_RESERVATION_ID}, got {reservation_id}")
    return {
        "connectorId": connector_id,
        "expiryDate": expiry_date,
        "idTag": _id_tag(id_tag),
        "reservationId": reservation_id,
    }


def cancel_reservation_req(reservation_id: int) -> dict[str, object]:
    if not 0 <= reservation_id <= MAX_RESERVATION_ID:
        raise ValueError(f"reservationId must be 0 to {MAX_RESERVATION_ID}, got {reservation_id}")
    return {"reservationId": reservation_id}


def get_configuration_req(keys: Sequence[str] | None = None) -> dict[str, object]:
    """No keys (None or empty) asks for the whole configuration."""
    return {"key": list(keys)} if keys else {}


def change_configuration_req(key: str, value: str) -> dict[str, object]:
    if len(key) > 50 or len(value) > 500:
        raise ValueError("ChangeConfiguration key is at most 50 and value 500 characters")
    return {"key": key, "value": value}


def read_command_status(action: str, payload: dict[str, object]) -> CommandResult:
    """What a charger's CallResult to one of our commands means.

    Never raises: an answer that cannot be read is FAILED with a detail naming the field.
    data always carries the raw "status" when there is one.
    """
    if action == "GetConfiguration":
        return _read_configuration(payload)
    if action == "GetLocalListVersion":
        version = payload.get("listVersion")
        if type(version) is float and version.is_integer():
            version = int(version)
        if type(version) is not int:
            return CommandResult(
                CommandStatus.FAILED,
                f"{action}.conf.listVersion: expected integer, got {show(version)}",
            )
        return CommandResult(CommandStatus.ACCEPTED, data={"listVersion": version})
    result = _read_status(action, payload)
    hashes = payload.get("certificateHashData")
    if action == "GetInstalledCertificateIds" and isinstance(hashes, list):
        good = [h for h in hashes if isinstance(h, dict)]
        return CommandResult(
            result.status, result.detail, {**result.data, "certificateHashData": good}
        )
    return result


def _read_status(action: str, payload: dict[str, object]) -> CommandResult:
    status = payload.get("status")
    if not isinstance(status, str):
        found = "missing" if "status" not in payload else f"got {show(status)}"
        return CommandResult(
            CommandStatus.FAILED, f"{action}.conf.status: expected string, {found}"
        )
    outcome = _STATUS.get(status)
    if outcome is None:
        return CommandResult(
            CommandStatus.FAILED,
            f"{action}.conf.status: unexpected status {show(status)}",
            {"status": status},
        )
    detail = status if status in _DETAIL_STATUSES else ""
    return CommandResult(outcome, detail, {"status": status})


def _read_configuration(payload: dict[str, object]) -> CommandResult:
    keys = payload.get("configurationKey", [])
    unknown = payload.get("unknownKey", [])
    if not isinstance(keys, list) or not isinstance(unknown, list):
        return CommandResult(
            CommandStatus.FAILED,
            "GetConfiguration.conf: configurationKey and unknownKey must be arrays",
        )
    # Entries that are not {"key": str, ...} objects are dropped: one bad key must not hide
    # the rest of the configuration.
    good = [k for k in keys if isinstance(k, dict) and isinstance(k.get("key"), str)]
    return CommandResult(
        CommandStatus.ACCEPTED,
        data={
            "configurationKey": good,
            "unknownKey": [k for k in unknown if isinstance(k, str)],
        },
    )


def read_call_error(error: CallError) -> CommandResult:
    """What a charger's CallError to one of our commands means."""
    status = (
        CommandStatus.NOT_SUPPORTED
        if error.error_code in (ErrorCode.NOT_IMPLEMENTED, ErrorCode.NOT_SUPPORTED)
        else CommandStatus.FAILED
    )
    return CommandResult(status, f"{error.error_code}: {error.description}"[:200])
