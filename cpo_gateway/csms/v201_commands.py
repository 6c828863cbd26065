"""OCPP 2.0.1 commands the gateway sends to a charger, and reading the charger's answers.

Builders take values the gateway owns; one that breaks the 2.0.1 schema is a bug here, so
they raise ValueError rather than send it. Connectors are addressed as (EVSE, connector on
it): the registry converts the stations file's connector number first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cpo_gateway.bridge.model import AuthStatus, CommandResult, CommandStatus
from cpo_gateway.csms.fields import show
from cpo_gateway.csms.v16_commands import read_command_status as read_status16
from cpo_gateway.csms.v201 import MAX_ID_TOKEN

# Our own idTokens (remote starts) and the ones we push in local lists: ISO14443 for card
# UIDs as the whitelist holds them, Central for tokens the gateway made for a remote start.
CENTRAL = "Central"
CARD = "ISO14443"
LOCAL_LIST_CTRLR = "LocalAuthListCtrlr"
ITEMS_PER_MESSAGE = "ItemsPerMessage"  # ItemsPerMessageSendLocalList in the device model
BYTES_PER_MESSAGE = "BytesPerMessage"  # BytesPerMessageSendLocalList
ENTRIES = "Entries"  # how many the list holds in all (maxLimit)
ENABLED = "Enabled"
_EXTRA_STATUS = {
    "OngoingAuthorizedTransaction": CommandStatus.REJECTED,
    "UnknownConnector": CommandStatus.REJECTED,
    "EmptyResultSet": CommandStatus.ACCEPTED,
}
TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "Heartbeat",
        "LogStatusNotification",
        "FirmwareStatusNotification",
        "MeterValues",
        "SignChargingStationCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)


def _token(value: str, type_: str) -> dict[str, object]:
    if not value or len(value) > MAX_ID_TOKEN:
        raise ValueError(f"idToken must be 1 to {MAX_ID_TOKEN} characters, got {value!r}")
    return {"idToken": value, "type": type_}


def _evse(evse: int, connector: int | None = None) -> dict[str, object]:
    out: dict[str, object] = {"id": evse}
    if connector is not None:
        out["connectorId"] = connector
    return out


def request_start_req(evse: int | None, id_tag: str, remote_start_id: int) -> dict[str, object]:
    req: dict[str, object] = {
        "idToken": _token(id_tag, CENTRAL),
        "remoteStartId": remote_start_id,
    }
    if evse is not None:
        req["evseId"] = evse
    return req


def request_stop_req(transaction_id: str) -> dict[str, object]:
    return {"transactionId": transaction_id}


def get_transaction_status_req(transaction_id: str | None) -> dict[str, object]:
    return {} if transaction_id is None else {"transactionId": transaction_id}


def trigger_message_req(
    requested_message: str, evse: int | None = None, connector: int | None = None
) -> dict[str, object]:
    if requested_message not in TRIGGERABLE:
        raise ValueError(f"requestedMessage {requested_message!r} is not a 2.0.1 trigger")
    req: dict[str, object] = {"requestedMessage": requested_message}
    if evse is not None:
        req["evse"] = _evse(evse, connector)
    return req


def change_availability_req(
    evse: int | None, connector: int | None, operational: str
) -> dict[str, object]:
    """evse None: the whole charging station. `operational`: Operative or Inoperative."""
    if operational not in ("Inoperative", "Operative"):
        raise ValueError(f"operationalStatus must be Inoperative or Operative, got {operational!r}")
    req: dict[str, object] = {"operationalStatus": operational}
    if evse is not None:
        req["evse"] = _evse(evse, connector)
    return req


def reset_req(type_: str, evse: int | None = None) -> dict[str, object]:
    """2.0.1 says Immediate or OnIdle; 1.6's Hard and Soft are read as those."""
    wire = {"Hard": "Immediate", "Soft": "OnIdle"}.get(type_, type_)
    if wire not in ("Immediate", "OnIdle"):
        raise ValueError(f"type must be Immediate or OnIdle, got {type_!r}")
    req: dict[str, object] = {"type": wire}
    if evse is not None:
        req["evseId"] = evse
    return req


def unlock_connector_req(evse: int, connector: int) -> dict[str, object]:
    return {"evseId": evse, "connectorId": connector}


def get_variables_req(items: Sequence[tuple[str, str]]) -> dict[str, object]:
    """(component, variable) pairs."""
    if not items:
        raise ValueError("GetVariables needs at least one variable")
    return {
        "getVariableData": [
            {"component": {"name": comp}, "variable": {"name": var}} for comp, var in items
        ]
    }


def set_variables_req(items: Sequence[tuple[str, str, str]]) -> dict[str, object]:
    """(component, variable, value) triples."""
    if not items:
        raise ValueError("SetVariables needs at least one variable")
    for _, _, value in items:
        if len(value) > 1000:
            raise ValueError("a variable's value is at most 1000 characters")
    return {
        "setVariableData": [
            {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value}
            for c, v, value in items
        ]
    }


def get_base_report_req(request_id: int, report_base: str) -> dict[str, object]:
    if report_base not in ("ConfigurationInventory", "FullInventory", "SummaryInventory"):
        raise ValueError(f"reportBase {report_base!r} is not a 2.0.1 report base")
    return {"requestId": request_id, "reportBase": report_base}


def local_list_entries(entries: Iterable[tuple[str, AuthStatus]]) -> list[dict[str, object]]:
    return [
        {"idToken": _token(tag, CARD), "idTokenInfo": {"status": AuthStatus(status).value}}
        for tag, status in entries
    ]


def send_local_list_req(
    version: int, items: list[dict[str, object]], update_type: str
) -> dict[str, object]:
    """2.0.1: versionNumber > 0 (0 means "no list" in GetLocalListVersion)."""
    if version < 1:
        raise ValueError(f"versionNumber must be > 0, got {version}")
    if update_type not in ("Full", "Differential"):
        raise ValueError(f"updateType must be Full or Differential, got {update_type!r}")
    req: dict[str, object] = {"versionNumber": version, "updateType": update_type}
    if items:
        req["localAuthorizationList"] = items
    return req


def read_command_status(action: str, payload: dict[str, object]) -> CommandResult:
    """What a 2.0.1 charger's CallResult to one of our commands means; never raises."""
    if action == "GetLocalListVersion":
        version = payload.get("versionNumber")
        if type(version) is not int:
            return CommandResult(
                CommandStatus.FAILED,
                f"{action}.versionNumber: expected integer, got {show(version)}",
            )
        # The core reads the answer under its 1.6 name.
        return CommandResult(CommandStatus.ACCEPTED, data={"listVersion": version})
    if action in ("GetVariables", "SetVariables", "GetTransactionStatus"):
        return CommandResult(CommandStatus.ACCEPTED, data=dict(payload))
    status = payload.get("status")
    extra = _EXTRA_STATUS.get(status) if isinstance(status, str) else None
    if extra is not None:
        return _said_why(CommandResult(extra, str(status), {"status": status}), payload)
    result = read_status16(action, payload)
    if action == "RequestStartTransaction" and isinstance(payload.get("transactionId"), str):
        result = CommandResult(
            result.status, result.detail, {**result.data, "transactionId": payload["transactionId"]}
        )
    elif action == "GetInstalledCertificateIds":
        result = _installed_certificates(result, payload)
    return _said_why(result, payload)


def _said_why(result: CommandResult, payload: dict[str, object]) -> CommandResult:
    """A 2.0.1 answer's statusInfo (reasonCode, additionalInfo) kept in data; a refusal's
    detail names the charger's status and that reason, for the operator who asked."""
    info = payload.get("statusInfo")
    reason = info.get("reasonCode") if isinstance(info, dict) else None
    data = result.data
    why = ""
    if isinstance(info, dict) and isinstance(reason, str):
        more = info.get("additionalInfo")
        kept: dict[str, object] = {"reasonCode": reason[:20]}
        why = reason[:20]
        if isinstance(more, str) and more:
            kept["additionalInfo"] = more[:512]
            why = f"{why}: {more[:512]}"
        data = {**data, "statusInfo": kept}
    if result.accepted:
        return CommandResult(result.status, result.detail, data)
    said = result.detail or str(payload.get("status") or "")
    detail = f"{said} ({why})" if said and why else said or why
    return CommandResult(result.status, detail, data)


def _installed_certificates(result: CommandResult, payload: dict[str, object]) -> CommandResult:
    """GetInstalledCertificateIds: the chains as the charger listed them, and each one's
    certificateHashData under the key the 1.6 answer uses (what DeleteCertificate takes)."""
    chains = payload.get("certificateHashDataChain")
    good = [
        c
        for c in (chains if isinstance(chains, list) else [])
        if isinstance(c, dict) and isinstance(c.get("certificateHashData"), dict)
    ]
    return CommandResult(
        result.status,
        result.detail,
        {
            **result.data,
            "certificateHashDataChain": good,
            "certificateHashData": [c["certificateHashData"] for c in good],
        },
    )


def variable_values(result: CommandResult) -> dict[tuple[str, str], str]:
    """(component, variable) -> value of each Accepted getVariableResult."""
    out: dict[tuple[str, str], str] = {}
    rows = result.data.get("getVariableResult")
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("attributeStatus") != "Accepted":
            continue
        comp, var = row.get("component"), row.get("variable")
        value = row.get("attributeValue")
        if isinstance(comp, dict) and isinstance(var, dict) and isinstance(value, str):
            out[str(comp.get("name")), str(var.get("name"))] = value
    return out
