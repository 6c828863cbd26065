"""OCPP 2.0.1 TransactionEvent, read into one value the handler maps onto the core.

The charger names the transaction (`transactionInfo.transactionId`, a string), numbers its
reports (`seqNo`), says whether it held one while offline (`offline`), and sends readings in
`meterValue`; the core takes these as charger_key, TransactionStep and energy samples.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpo_gateway.bridge.model import EnergySample, StepKind
from cpo_gateway.csms import fields
from cpo_gateway.csms.frames import ErrorCode
from cpo_gateway.csms.v201 import IdToken, id_token, positive
from cpo_gateway.csms.v201_meter import energy_samples

PATH = "TransactionEvent"
MAX_TRANSACTION_ID = 36
_KINDS = {"Started": StepKind.STARTED, "Updated": StepKind.UPDATED, "Ended": StepKind.ENDED}


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    kind: StepKind
    timestamp: str
    trigger_reason: str
    seq_no: int
    transaction_id: str
    offline: bool = False
    charging_state: str | None = None
    stopped_reason: str | None = None
    remote_start_id: int | None = None
    id_token: IdToken | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    samples: tuple[EnergySample, ...] = ()


def parse_transaction_event(p: dict[str, object]) -> TransactionEvent:
    kind_name = fields.req_str(p, PATH, "eventType")
    kind = _KINDS.get(kind_name)
    if kind is None:
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            PATH,
            "eventType",
            f"expected Started, Updated or Ended, got {fields.show(kind_name)}",
        )
    if "transactionInfo" not in p:
        fields.missing(PATH, "transactionInfo")
    info_path = f"{PATH}.transactionInfo"
    info = fields.as_object(p["transactionInfo"], info_path)
    tx_id = fields.req_str(info, info_path, "transactionId")
    if not tx_id or len(tx_id) > MAX_TRANSACTION_ID:
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            info_path,
            "transactionId",
            f"expected 1 to {MAX_TRANSACTION_ID} characters, got {len(tx_id)}",
        )
    offline = p.get("offline", False)
    if not isinstance(offline, bool):
        fields.wrong_type(PATH, "offline", "boolean", offline)
    token = None if p.get("idToken") is None else id_token(p["idToken"], f"{PATH}.idToken")
    evse_id = connector_id = None
    if p.get("evse") is not None:
        evse = fields.as_object(p["evse"], f"{PATH}.evse")
        evse_id = positive(evse, f"{PATH}.evse", "id", zero=True)
        connector_id = fields.opt_int(evse, f"{PATH}.evse", "connectorId")
    meter = p.get("meterValue")
    return TransactionEvent(
        kind=kind,
        timestamp=fields.req_timestamp(p, PATH),
        trigger_reason=fields.req_str(p, PATH, "triggerReason", 40),
        seq_no=positive(p, PATH, "seqNo", zero=True),
        transaction_id=tx_id,
        offline=offline,
        charging_state=fields.opt_str(info, info_path, "chargingState", 20),
        stopped_reason=fields.opt_str(info, info_path, "stoppedReason", 40),
        remote_start_id=fields.opt_int(info, info_path, "remoteStartId"),
        id_token=token,
        evse_id=evse_id,
        connector_id=connector_id,
        samples=() if meter is None else energy_samples(meter, f"{PATH}.meterValue"),
    )


def first_wh(samples: tuple[EnergySample, ...]) -> int | None:
    """The earliest register reading, rounded to Wh (the start's), or None."""
    return None if not samples else round(min(samples, key=lambda s: s.timestamp).wh)


def last_wh(samples: tuple[EnergySample, ...]) -> int | None:
    """The latest register reading, rounded to Wh (the end's), or None."""
    return None if not samples else round(max(samples, key=lambda s: s.timestamp).wh)
