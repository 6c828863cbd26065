"""State of the simulated OCPP 2.0.1 charging station that the CSMS's commands read and change.

Pure data and rules (the device model's variables, the local authorization list, EVSEs and
their connectors, transactions and meter payloads), kept apart from the socket so the answers
can be checked without a connection. Payload shapes are the OCA 2.0.1 schemas' (camelCase);
entries arriving from the library's `@on` handlers are snake_case, as it passes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cpo_gateway.sim.charger.state import (
    CHARGE_POWER_W,
    PHASE_CURRENT_A,
    PHASE_VOLTAGE_V,
    PHASES,
)

# 1.6 connector statuses (what callers of the shared simulator API use) in 2.0.1 words:
# 2.0.1 reports only whether a connector is in use; the charging state moves to
# TransactionEvent's chargingState.
CONNECTOR_STATUS = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Occupied": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
# 1.6 stop reasons in 2.0.1 words (most are spelt the same).
STOPPED_REASON = {"HardReset": "ImmediateReset", "SoftReset": "Reboot", "UnlockCommand": "Other"}

Key = tuple[str, str]  # (component name, variable name)


@dataclass
class Variable:
    value: str
    mutability: str = "ReadWrite"  # ReadOnly / WriteOnly / ReadWrite
    data_type: str = "string"


# The device model's names of the variables a CSMS reads to talk to this station; the
# second name of a pair is the one the specification's text uses for the same variable.
ALIASES: dict[Key, Key] = {
    ("LocalAuthListCtrlr", "ItemsPerMessageSendLocalList"): ("LocalAuthListCtrlr", "ItemsPerMessage"),
    ("LocalAuthListCtrlr", "BytesPerMessageSendLocalList"): ("LocalAuthListCtrlr", "BytesPerMessage"),
    ("DeviceDataCtrlr", "ItemsPerMessageGetVariables"): ("DeviceDataCtrlr", "ItemsPerMessage"),
}  # fmt: skip


@dataclass
class Transaction201:
    """A transaction running on an EVSE; the station chose `transaction_id`."""

    transaction_id: str
    evse_id: int
    connector_id: int
    id_token: str
    id_token_type: str
    meter_start: int
    meter_wh: int
    remote_start_id: int | None = None


@dataclass
class StationState:
    evses: int
    connectors_per_evse: int = 1
    local_list_supported: bool = True
    items_per_message: int = 50  # entries per SendLocalList message
    bytes_per_message: int = 65_536
    local_list_capacity: int = 100_000
    heartbeat_interval: int = 300
    meter_interval_s: float = 0
    local_list: dict[str, str] = field(default_factory=dict)
    local_list_version: int = 0
    variables: dict[Key, Variable] = field(default_factory=dict)
    connector_status: dict[tuple[int, int], str] = field(default_factory=dict)
    transactions: dict[int, Transaction201] = field(default_factory=dict)  # by EVSE id
    registers: dict[int, int] = field(default_factory=dict)  # Wh per EVSE, never reset

    def __post_init__(self) -> None:
        defaults: dict[Key, Variable] = {
            ("OCPPCommCtrlr", "HeartbeatInterval"): Variable(
                str(self.heartbeat_interval), data_type="integer"
            ),
            ("OCPPCommCtrlr", "MessageAttemptsTransactionEvent"): Variable(
                "3", data_type="integer"
            ),
            ("OCPPCommCtrlr", "MessageAttemptIntervalTransactionEvent"): Variable(
                "10", data_type="integer"
            ),
            ("SampledDataCtrlr", "TxUpdatedInterval"): Variable(
                str(int(self.meter_interval_s)), data_type="integer"
            ),
            ("SampledDataCtrlr", "TxUpdatedMeasurands"): Variable(
                "Energy.Active.Import.Register,Voltage,Current.Import,Power.Active.Import",
                data_type="MemberList",
            ),
            ("AuthCtrlr", "AuthorizeRemoteStart"): Variable("false", data_type="boolean"),
            ("AuthCtrlr", "LocalAuthorizeOffline"): Variable("true", data_type="boolean"),
            ("AuthCtrlr", "LocalPreAuthorize"): Variable("false", data_type="boolean"),
            ("DeviceDataCtrlr", "ItemsPerMessage"): Variable("50", "ReadOnly", "integer"),
            ("DeviceDataCtrlr", "BytesPerMessage"): Variable("65536", "ReadOnly", "integer"),
            ("ChargingStation", "AvailabilityState"): Variable("Available", "ReadOnly"),
            ("EVSE", "Count"): Variable(str(self.evses), "ReadOnly", "integer"),
        }
        if self.local_list_supported:
            # OCPP 2.0.1 D01: the controller exists only where the local list feature does.
            defaults |= {
                ("LocalAuthListCtrlr", "Enabled"): Variable("true", data_type="boolean"),
                ("LocalAuthListCtrlr", "Available"): Variable("true", "ReadOnly", "boolean"),
                ("LocalAuthListCtrlr", "Entries"): Variable("0", "ReadOnly", "integer"),
                ("LocalAuthListCtrlr", "Storage"): Variable(
                    str(self.local_list_capacity), "ReadOnly", "integer"
                ),
                ("LocalAuthListCtrlr", "ItemsPerMessage"): Variable(
                    str(self.items_per_message), "ReadOnly", "integer"
                ),
                ("LocalAuthListCtrlr", "BytesPerMessage"): Variable(
                    str(self.bytes_per_message), "ReadOnly", "integer"
                ),
            }
        self.variables = defaults | self.variables
        for evse in range(1, self.evses + 1):
            self.registers.setdefault(evse, 0)
            for connector in range(1, self.connectors_per_evse + 1):
                self.connector_status.setdefault((evse, connector), "Available")

    # -- device model ------------------------------------------------------------------------

    def _key(self, component: str, variable: str) -> Key:
        key = (component, variable)
        return ALIASES.get(key, key)

    def get_variable(self, component: str, variable: str) -> tuple[str, str | None]:
        """(attributeStatus, attributeValue) as GetVariableResult wants them."""
        key = self._key(component, variable)
        found = self.variables.get(key)
        if found is None:
            known = any(c == key[0] for c, _ in self.variables)
            return ("UnknownVariable" if known else "UnknownComponent"), None
        if found.mutability == "WriteOnly":
            return "Rejected", None
        if key == ("LocalAuthListCtrlr", "Entries"):
            return "Accepted", str(len(self.local_list))
        return "Accepted", found.value

    def set_variable(self, component: str, variable: str, value: str) -> str:
        """The SetVariableResult attributeStatus; keys the station acts on take effect at once."""
        key = self._key(component, variable)
        found = self.variables.get(key)
        if found is None:
            known = any(c == key[0] for c, _ in self.variables)
            return "UnknownVariable" if known else "UnknownComponent"
        if found.mutability == "ReadOnly":
            return "Rejected"
        if found.data_type == "integer":
            try:
                number = int(value)
            except ValueError:
                return "Rejected"
            if key == ("OCPPCommCtrlr", "HeartbeatInterval"):
                self.heartbeat_interval = number
            elif key == ("SampledDataCtrlr", "TxUpdatedInterval"):
                self.meter_interval_s = float(number)
        elif found.data_type == "boolean" and value.lower() not in ("true", "false"):
            return "Rejected"
        found.value = value
        return "Accepted"

    def int_variable(self, component: str, variable: str, default: int) -> int:
        found = self.variables.get(self._key(component, variable))
        try:
            return int(found.value) if found is not None else default
        except ValueError:
            return default

    def report_data(self) -> list[dict[str, Any]]:
        """Every variable as NotifyReport's reportData, in a stable order."""
        items = []
        for (component, variable), var in sorted(self.variables.items()):
            attribute: dict[str, Any] = {"type": "Actual", "mutability": var.mutability}
            if var.mutability != "WriteOnly":
                attribute["value"] = self.get_variable(component, variable)[1] or ""
            items.append(
                {
                    "component": {"name": component},
                    "variable": {"name": variable},
                    "variableAttribute": [attribute],
                    "variableCharacteristics": {
                        "dataType": var.data_type,
                        "supportsMonitoring": False,
                    },
                }
            )
        return items

    # -- local authorization list -------------------------------------------------------------

    def local_auth_enabled(self) -> bool:
        enabled = self.variables.get(("LocalAuthListCtrlr", "Enabled"))
        return self.local_list_supported and enabled is not None and enabled.value == "true"

    def send_local_list(
        self, version: int, update_type: str, entries: Sequence[Mapping[str, Any]]
    ) -> str:
        """Apply a SendLocalListRequest (snake_case entries as the library passes them)."""
        if not self.local_auth_enabled():
            return "Failed"
        if len(entries) > self.int_variable("LocalAuthListCtrlr", "ItemsPerMessage", 50):
            return "Failed"
        if update_type == "Full":
            fresh: dict[str, str] = {}
            for entry in entries:
                info = entry.get("id_token_info")
                if info is not None:
                    fresh[_token(entry)] = str(info["status"])
            if len(fresh) > self.local_list_capacity:
                return "Failed"
            self.local_list = fresh
        else:
            # D01.FR.19: a differential update must move the version forward.
            if version <= self.local_list_version:
                return "VersionMismatch"
            merged = dict(self.local_list)
            for entry in entries:
                info = entry.get("id_token_info")
                if info is None:
                    merged.pop(_token(entry), None)
                else:
                    merged[_token(entry)] = str(info["status"])
            if len(merged) > self.local_list_capacity:
                return "Failed"
            self.local_list = merged
        self.local_list_version = version
        return "Accepted"

    def authorize_locally(self, id_token: str) -> bool:
        return self.local_auth_enabled() and self.local_list.get(id_token.upper()) == "Accepted"

    # -- EVSEs and transactions ---------------------------------------------------------------

    def has_connector(self, evse_id: int, connector_id: int = 1) -> bool:
        return 1 <= evse_id <= self.evses and 1 <= connector_id <= self.connectors_per_evse

    def transaction_by_id(self, transaction_id: str) -> Transaction201 | None:
        for transaction in self.transactions.values():
            if transaction.transaction_id == transaction_id:
                return transaction
        return None


def _token(entry: Mapping[str, Any]) -> str:
    # IdTokens are case-insensitive (2.0.1 part 2, IdTokenType).
    return str(entry["id_token"]["id_token"]).upper()


def meter_value(wh: int, timestamp: str, *, context: str, extra_samples: bool) -> dict[str, Any]:
    """One MeterValueType: the energy register first, then per-phase figures."""
    samples: list[dict[str, Any]] = [
        {
            "value": wh,
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unitOfMeasure": {"unit": "Wh"},
        }
    ]
    if extra_samples:
        for phase in PHASES:
            samples.append(
                {
                    "value": PHASE_VOLTAGE_V,
                    "context": context,
                    "measurand": "Voltage",
                    "phase": f"{phase}-N",
                    "unitOfMeasure": {"unit": "V"},
                }
            )
            samples.append(
                {
                    "value": PHASE_CURRENT_A,
                    "context": context,
                    "measurand": "Current.Import",
                    "phase": phase,
                    "unitOfMeasure": {"unit": "A"},
                }
            )
        samples.append(
            {
                "value": CHARGE_POWER_W,
                "context": context,
                "measurand": "Power.Active.Import",
                "unitOfMeasure": {"unit": "W"},
            }
        )
    return {"timestamp": timestamp, "sampledValue": samples}
