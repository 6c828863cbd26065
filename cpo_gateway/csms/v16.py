"""OCPP 1.6 payloads a charger sends, read into the core's types, and the answers to them.

Parsers are tolerant readers (see fields.py for the shared rules): vendors send enum typos,
over-long serials and idTags with suffixes, and a charger that gets an error back keeps
retrying or blocks the card. So: unknown enum values are kept as sent (an unknown connector
status becomes state=None), vendor strings are cut to the schema's maximum for storage, idTags
are kept exactly as sent, timestamps are kept as sent once they parse as ISO 8601. What cannot
be read raises PayloadError (see frames.py; PayloadError.with_unique_id makes the FrameError
for the CallError answer).

The server runs them after the OCA schema check (handlers.py, schemas.py, quirks.py), so in
the gateway they read payloads that fit the schema or were mended into it; they stay tolerant
on their own (the schema check can be turned off, and a transaction message the schema
refuses is still read when they can).

Commands the central system sends and reading their answers (v16_commands.py), and energy
readings out of MeterValue lists (v16_meter.py), are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable

from cpo_gateway import logs
from cpo_gateway.bridge.model import (
    AuthDecision,
    BootInfo,
    ConnectorState,
    MeterReport,
    StatusReport,
    TransactionStart,
    TransactionStop,
)
from cpo_gateway.csms import fields
from cpo_gateway.csms.frames import ErrorCode, PayloadError
from cpo_gateway.csms.v16_commands import (
    change_availability_req,
    change_configuration_req,
    get_configuration_req,
    get_local_list_version_req,
    read_call_error,
    read_command_status,
    remote_start_req,
    remote_stop_req,
    reset_req,
    send_local_list_req,
    trigger_message_req,
    unlock_connector_req,
)
from cpo_gateway.csms.v16_meter import ENERGY_REGISTER, energy_samples
from cpo_gateway.csms.v16_security import parse_security_event, parse_sign_certificate

__all__ = [
    "CENTRAL_SYSTEM_ACTIONS",
    "CHARGE_POINT_ACTIONS",
    "ENERGY_REGISTER",
    "INBOUND",
    "PayloadError",
    "boot_conf",
    "change_availability_req",
    "change_configuration_req",
    "data_transfer_conf",
    "empty_conf",
    "energy_samples",
    "get_configuration_req",
    "get_local_list_version_req",
    "heartbeat_conf",
    "id_tag_info",
    "parse_authorize",
    "parse_boot",
    "parse_data_transfer",
    "parse_diagnostics_status",
    "parse_firmware_status",
    "parse_heartbeat",
    "parse_meter_values",
    "parse_start",
    "parse_status",
    "parse_stop",
    "read_call_error",
    "read_command_status",
    "remote_start_req",
    "remote_stop_req",
    "reset_req",
    "send_local_list_req",
    "start_conf",
    "stop_conf",
    "trigger_message_req",
    "unhandled_action_error",
    "unlock_connector_req",
]

log = logs.get(__name__)
_STATES = {s.value: s for s in ConnectorState}


# --- inbound: what a charger sends --------------------------------------------------------
def parse_boot(cp_id: str, p: dict[str, object]) -> BootInfo:
    path = "BootNotification"
    serial = fields.opt_str(p, path, "chargePointSerialNumber", 25)
    if serial is None:
        serial = fields.opt_str(p, path, "chargeBoxSerialNumber", 25)
    return BootInfo(
        charge_point_id=cp_id,
        vendor=fields.req_str(p, path, "chargePointVendor", 20),
        model=fields.req_str(p, path, "chargePointModel", 20),
        serial=serial,
        firmware=fields.opt_str(p, path, "firmwareVersion", 50),
    )


def parse_heartbeat(p: dict[str, object]) -> None:
    """Heartbeat has no fields; anything sent is ignored."""
    return None


def parse_status(cp_id: str, p: dict[str, object]) -> StatusReport:
    path = "StatusNotification"
    status = fields.req_str(p, path, "status")
    return StatusReport(
        charge_point_id=cp_id,
        connector_id=fields.connector_id(p, path),
        state=_STATES.get(status),
        error_code=fields.req_str(p, path, "errorCode", 50),
        timestamp=fields.opt_timestamp(p, path),
    )


def parse_authorize(p: dict[str, object]) -> str:
    """The idTag exactly as sent (normalising it is the core's job); over 20 characters it is
    refused (PropertyConstraintViolation naming the field)."""
    return fields.id_token(p, "Authorize")


def parse_start(cp_id: str, p: dict[str, object]) -> TransactionStart:
    path = "StartTransaction"
    return TransactionStart(
        charge_point_id=cp_id,
        connector_id=fields.connector_id(p, path),
        id_tag=fields.id_token(p, path),
        meter_start_wh=fields.req_int(p, path, "meterStart"),
        timestamp=fields.req_timestamp(p, path),
        reservation_id=fields.opt_int(p, path, "reservationId"),
    )


def parse_stop(cp_id: str, p: dict[str, object]) -> TransactionStop:
    """An idTag over 20 characters is dropped, not refused: a stop must never be lost (a
    charger refused gives up on it after a few attempts, and the session's energy with it),
    and the idTag is optional in a stop. It is not cut either: a cut token is another card."""
    path = "StopTransaction"
    data = p.get("transactionData")
    id_tag = fields.opt_str(p, path, "idTag")
    if id_tag is not None and len(id_tag) > fields.MAX_ID_TOKEN:
        log.warning(
            "ocpp.id_tag_dropped",
            charge_point_id=cp_id,
            field=f"{path}.idTag",
            length=len(id_tag),
            max_length=fields.MAX_ID_TOKEN,
        )
        id_tag = None
    return TransactionStop(
        charge_point_id=cp_id,
        transaction_id=fields.req_int(p, path, "transactionId"),
        meter_stop_wh=fields.req_int(p, path, "meterStop"),
        timestamp=fields.req_timestamp(p, path),
        id_tag=id_tag,
        reason=fields.opt_str(p, path, "reason", 50),
        samples=() if data is None else energy_samples(data, f"{path}.transactionData"),
    )


def parse_meter_values(cp_id: str, p: dict[str, object]) -> MeterReport:
    path = "MeterValues"
    return MeterReport(
        charge_point_id=cp_id,
        connector_id=fields.connector_id(p, path),
        transaction_id=fields.opt_int(p, path, "transactionId"),
        samples=energy_samples(fields.req_list(p, path, "meterValue"), f"{path}.meterValue"),
    )


def parse_data_transfer(p: dict[str, object]) -> tuple[str, str | None, object]:
    """(vendorId, messageId, data). data is returned as sent: the schema says string, but
    vendors send objects too."""
    path = "DataTransfer"
    return (
        fields.req_str(p, path, "vendorId", 255),
        fields.opt_str(p, path, "messageId", 50),
        p.get("data"),
    )


def parse_diagnostics_status(p: dict[str, object]) -> str:
    return fields.req_str(p, "DiagnosticsStatusNotification", "status", 50)


def parse_firmware_status(p: dict[str, object]) -> str:
    return fields.req_str(p, "FirmwareStatusNotification", "status", 50)


Parser = Callable[[str, dict[str, object]], object]

INBOUND: dict[str, Parser] = {
    "Authorize": lambda _cp, p: parse_authorize(p),
    "BootNotification": parse_boot,
    "DataTransfer": lambda _cp, p: parse_data_transfer(p),
    "DiagnosticsStatusNotification": lambda _cp, p: parse_diagnostics_status(p),
    "FirmwareStatusNotification": lambda _cp, p: parse_firmware_status(p),
    "Heartbeat": lambda _cp, p: parse_heartbeat(p),
    "MeterValues": parse_meter_values,
    "StartTransaction": parse_start,
    "StatusNotification": parse_status,
    "StopTransaction": parse_stop,
    "SignCertificate": parse_sign_certificate,
    "SecurityEventNotification": parse_security_event,
}
"""Action -> parser for every action the gateway handles from a charger. Every entry takes
(charge_point_id, payload), whether or not its result needs the id, so the server calls them
all the same way."""

# Actions a charger may send in OCPP 1.6 and its security extension.
CHARGE_POINT_ACTIONS = frozenset(
    {*INBOUND, "LogStatusNotification", "SecurityEventNotification", "SignCertificate"}
    | {"SignedFirmwareStatusNotification"}
)
# Actions only the central system sends (DataTransfer goes both ways and is in INBOUND).
CENTRAL_SYSTEM_ACTIONS = frozenset(
    {
        "CancelReservation",
        "CertificateSigned",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetInstalledCertificateIds",
        "GetLocalListVersion",
        "GetLog",
        "InstallCertificate",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "SignedUpdateFirmware",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
    }
)


def unhandled_action_error(action: str) -> ErrorCode:
    """The CallError code for a Call whose action is not in INBOUND.

    OCPP-J 1.6 defines NotImplemented as "Requested Action is not known by receiver" and
    NotSupported as "recognized but not supported": an OCPP 1.6 action the gateway does not
    take from a charger (RemoteStartTransaction sent by a charger, SignCertificate) is
    NotSupported; any other name is NotImplemented.
    """
    if action in CHARGE_POINT_ACTIONS or action in CENTRAL_SYSTEM_ACTIONS:
        return ErrorCode.NOT_SUPPORTED
    return ErrorCode.NOT_IMPLEMENTED


# --- answers to a charger's Calls ------------------------------------------------------------
def boot_conf(status: str, interval: int, current_time: str) -> dict[str, object]:
    return {"status": status, "currentTime": current_time, "interval": interval}


def id_tag_info(decision: AuthDecision, expiry: str | None = None) -> dict[str, object]:
    info: dict[str, object] = {"status": decision.status.value}
    if expiry is not None:
        info["expiryDate"] = expiry
    return info


def start_conf(transaction_id: int, id_tag_info: dict[str, object]) -> dict[str, object]:
    return {"transactionId": transaction_id, "idTagInfo": id_tag_info}


def stop_conf(id_tag_info: dict[str, object] | None = None) -> dict[str, object]:
    return {} if id_tag_info is None else {"idTagInfo": id_tag_info}


def heartbeat_conf(now_iso: str) -> dict[str, object]:
    return {"currentTime": now_iso}


def data_transfer_conf(status: str, data: str | None = None) -> dict[str, object]:
    conf: dict[str, object] = {"status": status}
    if data is not None:
        conf["data"] = data
    return conf


def empty_conf() -> dict[str, object]:
    """The answer to StatusNotification, MeterValues and the two status notifications."""
    return {}
