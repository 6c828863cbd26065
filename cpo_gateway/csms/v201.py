"""OCPP 2.0.1 payloads a charger sends, read into the core's types, and the answers to them.

Tolerant readers under the rules of fields.py, as for 1.6 (v16.py): unknown enum values are
kept as sent, vendor strings are cut to the schema's maximum, an idToken is kept exactly as
sent. What cannot be read raises PayloadError naming the field; the connection spells its
error code the 2.0.1 way (codes.py). TransactionEvent is read in v201_tx.py.

Connectors: a 2.0.1 charger names one by EVSE and connector on that EVSE; the server turns
that into the stations file's connector number (Core.connector_by_address), so these
parsers return the pair as sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cpo_gateway.bridge.model import AuthDecision, BootInfo, ConnectorState
from cpo_gateway.csms import fields
from cpo_gateway.csms.frames import ErrorCode

MAX_ID_TOKEN = 36  # IdTokenType.idToken: identifierString, maxLength 36
# IdTokenEnumType: every type goes through the same authorization chain.
ID_TOKEN_TYPES = frozenset(
    {
        "Central",
        "eMAID",
        "ISO14443",
        "ISO15693",
        "KeyCode",
        "Local",
        "MacAddress",
        "NoAuthorization",
    }
)
# ConnectorStatusEnumType -> the core's states. Occupied means plugged in: Preparing until
# the server knows a transaction runs there (then Charging, see handlers201.py).
CONNECTOR_STATES = {
    "Available": ConnectorState.AVAILABLE,
    "Occupied": ConnectorState.PREPARING,
    "Reserved": ConnectorState.RESERVED,
    "Unavailable": ConnectorState.UNAVAILABLE,
    "Faulted": ConnectorState.FAULTED,
}


@dataclass(frozen=True, slots=True)
class IdToken:
    value: str
    type: str  # as sent; an unknown type is kept, not refused


@dataclass(frozen=True, slots=True)
class StatusReport201:
    evse_id: int
    connector_id: int
    status: str  # as sent
    state: ConnectorState | None
    timestamp: str


@dataclass(frozen=True, slots=True)
class Notice:
    """NotifyEvent / NotifyReport: accepted and logged, not interpreted."""

    action: str
    seq_no: int
    tbc: bool
    items: int


def positive(obj: dict[str, object], path: str, name: str, *, zero: bool = False) -> int:
    value = fields.req_int(obj, path, name)
    if value < (0 if zero else 1):
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            path,
            name,
            f"expected an integer >= {0 if zero else 1}, got {value}",
        )
    return value


def id_token(value: object, path: str) -> IdToken:
    obj = fields.as_object(value, path)
    token = fields.req_str(obj, path, "idToken")
    if len(token) > MAX_ID_TOKEN:
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            path,
            "idToken",
            f"expected at most {MAX_ID_TOKEN} characters, got {len(token)}",
        )
    return IdToken(token, fields.req_str(obj, path, "type", 20))


def parse_boot(cp_id: str, p: dict[str, object]) -> BootInfo:
    path = "BootNotification"
    if "chargingStation" not in p:
        fields.missing(path, "chargingStation")
    station = fields.as_object(p["chargingStation"], f"{path}.chargingStation")
    fields.req_str(p, path, "reason", 30)
    spath = f"{path}.chargingStation"
    return BootInfo(
        charge_point_id=cp_id,
        vendor=fields.req_str(station, spath, "vendorName", 50),
        model=fields.req_str(station, spath, "model", 20),
        serial=fields.opt_str(station, spath, "serialNumber", 25),
        firmware=fields.opt_str(station, spath, "firmwareVersion", 50),
    )


def parse_status(p: dict[str, object]) -> StatusReport201:
    path = "StatusNotification"
    status = fields.req_str(p, path, "connectorStatus", 20)
    return StatusReport201(
        evse_id=positive(p, path, "evseId", zero=True),
        connector_id=positive(p, path, "connectorId", zero=True),
        status=status,
        state=CONNECTOR_STATES.get(status),
        timestamp=fields.req_timestamp(p, path),
    )


def parse_authorize(p: dict[str, object]) -> IdToken:
    if "idToken" not in p:
        fields.missing("Authorize", "idToken")
    return id_token(p["idToken"], "Authorize.idToken")


def parse_notice(action: str, p: dict[str, object]) -> Notice:
    key = "eventData" if action == "NotifyEvent" else "reportData"
    items = p.get(key)
    if action == "NotifyEvent" and items is None:
        fields.missing(action, key)
    if items is not None and not isinstance(items, list):
        fields.wrong_type(action, key, "array", items)
    fields.req_timestamp(p, action, "generatedAt")
    tbc = p.get("tbc", False)
    if not isinstance(tbc, bool):
        fields.wrong_type(action, "tbc", "boolean", tbc)
    return Notice(action, positive(p, action, "seqNo", zero=True), tbc, len(items or ()))


Parser = Callable[[str, dict[str, object]], object]

INBOUND: dict[str, Parser] = {
    "Authorize": lambda _cp, p: parse_authorize(p),
    "BootNotification": parse_boot,
    "Heartbeat": lambda _cp, p: None,
    "NotifyEvent": lambda _cp, p: parse_notice("NotifyEvent", p),
    "NotifyReport": lambda _cp, p: parse_notice("NotifyReport", p),
    "StatusNotification": lambda _cp, p: parse_status(p),
}
"""Action -> parser for the 2.0.1 actions read here (TransactionEvent: v201_tx.py)."""

# Messages a 2.0.1 charger may send that the gateway does not take (NotSupported, not
# NotImplemented: they are 2.0.1 actions). Certificate handling is added beside these.
CHARGING_STATION_ACTIONS = frozenset(
    {
        "ClearedChargingLimit",
        "DataTransfer",
        "FirmwareStatusNotification",
        "Get15118EVCertificate",
        "GetCertificateStatus",
        "LogStatusNotification",
        "MeterValues",
        "NotifyChargingLimit",
        "NotifyCustomerInformation",
        "NotifyDisplayMessages",
        "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule",
        "NotifyMonitoringReport",
        "PublishFirmwareStatusNotification",
        "ReportChargingProfiles",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "SignCertificate",
    }
)


# --- answers ---------------------------------------------------------------------------------
def boot_conf(status: str, interval: int, current_time: str) -> dict[str, object]:
    return {"status": status, "currentTime": current_time, "interval": interval}


def heartbeat_conf(now_iso: str) -> dict[str, object]:
    return {"currentTime": now_iso}


def id_token_info(decision: AuthDecision, expiry: str | None = None) -> dict[str, object]:
    """AuthorizationStatusEnumType holds every 1.6 status under the same name."""
    info: dict[str, object] = {"status": decision.status.value}
    if expiry is not None:
        info["cacheExpiryDateTime"] = expiry
    return info
