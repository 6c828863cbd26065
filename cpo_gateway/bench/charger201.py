"""One simulated OCPP 2.0.1 station of the load generator: the 1.6 load charger's raw frames,
orjson and closed loop, with 2.0.1 messages.

The station has at most one Call of its own in flight (OCPP-J) and answers the CSMS's Calls
at once with schema-valid answers: GetVariables reads a large ItemsPerMessage (so a local
list goes in few messages), the rest is "Accepted" or its equivalent.
"""

from __future__ import annotations

import itertools

from cpo_gateway.bench.charger import LoadCharger, Payload, now_iso

STATION = {"chargingStation": {"model": "Bench-201", "vendorName": "LoadGen"}, "reason": "PowerUp"}
_tx_ids = itertools.count(1)


def transaction_event(
    event_type: str, tx_id: str, seq_no: int, wh: int, trigger: str, *, evse: int = 1
) -> Payload:
    """A TransactionEvent with meter values as a 22 kW AC station sends them."""
    context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
        event_type, "Sample.Periodic"
    )
    sampled = [
        {"value": wh, "measurand": "Energy.Active.Import.Register", "context": context,
         "location": "Outlet", "unitOfMeasure": {"unit": "Wh"}},
        {"value": 11040, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
        {"value": 16.0, "measurand": "Current.Import", "phase": "L1", "unitOfMeasure": {"unit": "A"}},
        {"value": 16.1, "measurand": "Current.Import", "phase": "L2", "unitOfMeasure": {"unit": "A"}},
        {"value": 15.9, "measurand": "Current.Import", "phase": "L3", "unitOfMeasure": {"unit": "A"}},
        {"value": 230.2, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": {"unit": "V"}},
    ]  # fmt: skip
    now = now_iso()
    body: Payload = {
        "eventType": event_type,
        "timestamp": now,
        "triggerReason": trigger,
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx_id, "chargingState": "Charging"},
        "meterValue": [{"timestamp": now, "sampledValue": sampled}],
    }
    if event_type == "Started":
        body["evse"] = {"id": evse, "connectorId": 1}
    return body


def _items(payload: Payload, key: str) -> list[tuple[Payload, Payload]]:
    """(component, variable) of each well-formed entry of a Get/SetVariables request."""
    entries = payload.get(key)
    found = []
    for item in entries if isinstance(entries, list) else []:
        if isinstance(item, dict):
            component, variable = item.get("component"), item.get("variable")
            if isinstance(component, dict) and isinstance(variable, dict):
                found.append((component, variable))
    return found


class LoadCharger201(LoadCharger):
    """The 2.0.1 station: the same `call`, `connect` and messages as the 1.6 load charger."""

    subprotocol = "ocpp2.0.1"

    def __init__(self, cp_id: str, host: str, port: int, path: str) -> None:
        super().__init__(cp_id, host, port, path)
        self.transaction: str | None = None
        self.seq_no = 0

    def reply_to(self, action: str, payload: Payload) -> Payload:
        if action == "GetVariables":
            results = []
            for component, variable in _items(payload, "getVariableData"):
                name = str(variable.get("name", ""))
                value = "true" if name in ("Enabled", "Available") else "1000"
                results.append(
                    {
                        "attributeStatus": "Accepted",
                        "attributeValue": value,
                        "component": component,
                        "variable": variable,
                    }
                )
            return {"getVariableResult": results}
        if action == "SetVariables":
            results = [
                {"attributeStatus": "Accepted", "component": component, "variable": variable}
                for component, variable in _items(payload, "setVariableData")
            ]
            return {"setVariableResult": results}
        if action == "GetLocalListVersion":
            return {"versionNumber": 0}
        if action == "GetTransactionStatus":
            return {"messagesInQueue": False, "ongoingIndicator": self.transaction is not None}
        if action == "UnlockConnector":
            return {"status": "Unlocked"}
        return {"status": "Accepted"}

    async def boot(self, timeout: float = 30.0) -> Payload:  # noqa: ASYNC109
        return await self.call("BootNotification", STATION, timeout)

    async def status(self, status: str, connector: int = 1) -> Payload:
        connector_status = "Available" if status == "Available" else "Occupied"
        body = {
            "timestamp": now_iso(),
            "connectorStatus": connector_status,
            "evseId": connector,
            "connectorId": 1,
        }
        return await self.call("StatusNotification", body)

    async def authorize(self, id_tag: str) -> Payload:
        return await self.call("Authorize", {"idToken": {"idToken": id_tag, "type": "ISO14443"}})

    async def start_transaction(self, id_tag: str, connector: int = 1) -> Payload:
        self.meter_wh += 1
        self.transaction = f"{self.cp_id}-{next(_tx_ids)}"
        self.seq_no = 0
        self.id_tag = id_tag
        body = transaction_event(
            "Started",
            self.transaction,
            self._next_seq(),
            self.meter_wh,
            "Authorized",
            evse=connector,
        )
        body["idToken"] = {"idToken": id_tag, "type": "ISO14443"}
        return await self.call("TransactionEvent", body)

    async def meter_values(self, connector: int = 1) -> Payload:
        """TransactionEvent Updated with meter values (the 2.0.1 way of sending them)."""
        self.meter_wh += 250
        tx = self.transaction or f"{self.cp_id}-none"
        body = transaction_event(
            "Updated", tx, self._next_seq(), self.meter_wh, "MeterValuePeriodic"
        )
        return await self.call("TransactionEvent", body)

    async def stop_transaction(self) -> Payload:
        tx = self.transaction or f"{self.cp_id}-none"
        body = transaction_event("Ended", tx, self._next_seq(), self.meter_wh, "StopAuthorized")
        body["transactionInfo"]["stoppedReason"] = "Local"
        reply = await self.call("TransactionEvent", body)
        self.transaction = None
        return reply

    def _next_seq(self) -> int:
        seq = self.seq_no
        self.seq_no += 1
        return seq
