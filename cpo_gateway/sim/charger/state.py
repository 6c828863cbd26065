"""State of the simulated charge point that central system commands read and change.

Pure data and rules (configuration keys, local authorization list, meter payloads), kept apart
from the socket so the answers can be checked without a connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Fixed electrical figures for the samples: a three-phase 16 A charge at 230 V.
PHASE_VOLTAGE_V = 230.0
PHASE_CURRENT_A = 16.0
PHASES = ("L1", "L2", "L3")
CHARGE_POWER_W = PHASE_VOLTAGE_V * PHASE_CURRENT_A * len(PHASES)

_READ_ONLY_KEYS = frozenset(
    {"NumberOfConnectors", "SendLocalListMaxLength", "LocalAuthListMaxLength"}
)


def ocpp_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z suffix, the form most central systems expect."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Transaction:
    """A transaction running on a connector; `transaction_id` is negative until answered."""

    connector_id: int
    transaction_id: int
    id_tag: str
    meter_start: int
    meter_wh: int


@dataclass
class ChargerState:
    connectors: int
    local_list_supported: bool = True
    reservation_supported: bool = True
    local_list_max_length: int = 50  # entries per SendLocalList message
    local_list_capacity: int = 100_000  # entries the charger can hold in all
    heartbeat_interval: int = 300
    meter_interval_s: float = 0
    local_list: dict[str, str] = field(default_factory=dict)
    local_list_version: int = 0
    configuration: dict[str, str] = field(default_factory=dict)
    connector_status: dict[int, str] = field(default_factory=dict)
    transactions: dict[int, Transaction] = field(default_factory=dict)
    # Each connector's energy register (Wh): it keeps counting across transactions.
    registers: dict[int, int] = field(default_factory=dict)
    reservations: dict[int, tuple[int, str]] = field(default_factory=dict)  # id: (connector, tag)

    def __post_init__(self) -> None:
        self.configuration = {
            "HeartbeatInterval": str(self.heartbeat_interval),
            "MeterValueSampleInterval": str(int(self.meter_interval_s)),
            "NumberOfConnectors": str(self.connectors),
            # OCPP 1.6 §9.2: these keys exist only where the local list feature does.
            **(
                {
                    "LocalAuthListEnabled": "true",
                    "LocalAuthListMaxLength": str(self.local_list_capacity),
                    "SendLocalListMaxLength": str(self.local_list_max_length),
                }
                if self.local_list_supported
                else {}
            ),
            "SupportedFeatureProfiles": ",".join(
                ["Core", "LocalAuthListManagement", "RemoteTrigger"]
                + (["Reservation"] if self.reservation_supported else [])
            ),
            "LocalAuthorizeOffline": "true",
            "LocalPreAuthorize": "false",
            "AuthorizeRemoteTxRequests": "false",
            "TransactionMessageAttempts": "3",
            "TransactionMessageRetryInterval": "10",
            "MeterValuesSampledData": "Energy.Active.Import.Register,Voltage,Current.Import",
            **self.configuration,
        }
        for connector_id in range(1, self.connectors + 1):
            self.connector_status.setdefault(connector_id, "Available")
            self.registers.setdefault(connector_id, 0)

    # -- configuration -----------------------------------------------------------------------

    def get_configuration(self, keys: list[str] | None) -> dict[str, Any]:
        """The GetConfiguration.conf payload (camelCase)."""
        wanted = keys if keys else list(self.configuration)
        known = [
            {"key": key, "readonly": key in _READ_ONLY_KEYS, "value": self.configuration[key]}
            for key in wanted
            if key in self.configuration
        ]
        unknown = [key for key in wanted if key not in self.configuration]
        answer: dict[str, Any] = {"configurationKey": known}
        if unknown:
            answer["unknownKey"] = unknown
        return answer

    def change_configuration(self, key: str, value: str) -> str:
        if key in _READ_ONLY_KEYS:
            return "Rejected"
        self.configuration[key] = value
        # Keys the charger itself acts on take effect at once, as on real hardware.
        try:
            if key == "HeartbeatInterval":
                self.heartbeat_interval = int(value)
            elif key == "MeterValueSampleInterval":
                self.meter_interval_s = float(value)
        except ValueError:
            return "Rejected"
        return "Accepted"

    def local_auth_enabled(self) -> bool:
        return self.local_list_supported and (
            self.configuration.get("LocalAuthListEnabled", "true").lower() == "true"
        )

    # -- local authorization list -------------------------------------------------------------

    def send_local_list(
        self, list_version: int, update_type: str, entries: Sequence[Mapping[str, Any]]
    ) -> str:
        """Apply a SendLocalList.req (snake_case entries as the library passes them)."""
        if not self.local_list_supported:
            return "NotSupported"
        if not self.local_auth_enabled():
            return "Failed"  # as chargers with LocalAuthListEnabled=false answer
        if len(entries) > self.local_list_max_length:
            return "Failed"
        if update_type == "Full":
            fresh: dict[str, str] = {}
            for entry in entries:
                info = entry.get("id_tag_info")
                if info is not None:
                    fresh[str(entry["id_tag"]).upper()] = str(info["status"])
            self.local_list = fresh
        else:
            # OCPP 1.6 §5.15: a differential update must move the version forward.
            if list_version <= self.local_list_version:
                return "VersionMismatch"
            merged = dict(self.local_list)
            for entry in entries:
                tag = str(entry["id_tag"]).upper()
                info = entry.get("id_tag_info")
                if info is None:
                    merged.pop(tag, None)
                else:
                    merged[tag] = str(info["status"])
            if len(merged) > self.local_list_capacity:
                return "Failed"
            self.local_list = merged
        self.local_list_version = list_version
        return "Accepted"

    def get_local_list_version(self) -> int:
        # OCPP 1.6 §5.9: -1 when the feature is absent, 0 when no list was ever received.
        return self.local_list_version if self.local_list_supported else -1

    def authorize_locally(self, id_tag: str) -> bool:
        # IdTokens are case-insensitive (OCPP 1.6 §7.28).
        return self.local_auth_enabled() and self.local_list.get(id_tag.upper()) == "Accepted"

    # -- transactions ------------------------------------------------------------------------

    def transaction_by_id(self, transaction_id: int) -> Transaction | None:
        for transaction in self.transactions.values():
            if transaction.transaction_id == transaction_id:
                return transaction
        return None

    def rename_transaction(self, placeholder: int, real_id: int) -> None:
        transaction = self.transaction_by_id(placeholder)
        if transaction is not None:
            transaction.transaction_id = real_id


def signed_value(blob: str, *, context: str) -> dict[str, str]:
    """The register's reading as the meter signed it (an OCMF blob, say), beside the Raw one."""
    return {
        "value": blob,
        "context": context,
        "format": "SignedData",
        "measurand": "Energy.Active.Import.Register",
        "location": "Outlet",
        "unit": "Wh",
    }


def sampled_values(wh: int, *, context: str, extra_samples: bool) -> list[dict[str, str]]:
    """One meterValue's sampledValue list: the energy register, then per-phase figures."""
    samples = [
        {
            "value": str(wh),
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit": "Wh",
        }
    ]
    if not extra_samples:
        return samples
    for phase in PHASES:
        samples.append(
            {
                "value": f"{PHASE_VOLTAGE_V:.1f}",
                "context": context,
                "measurand": "Voltage",
                "phase": f"{phase}-N",
                "location": "Outlet",
                "unit": "V",
            }
        )
        samples.append(
            {
                "value": f"{PHASE_CURRENT_A:.1f}",
                "context": context,
                "measurand": "Current.Import",
                "phase": phase,
                "location": "Outlet",
                "unit": "A",
            }
        )
    samples.append(
        {
            "value": f"{CHARGE_POWER_W:.0f}",
            "context": context,
            "measurand": "Power.Active.Import",
            "location": "Outlet",
            "unit": "W",
        }
    )
    return samples
