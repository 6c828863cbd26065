"""Energy readings out of OCPP 2.0.1 MeterValue lists (TransactionEvent, MeterValues).

2.0.1 differs from 1.6 (v16_meter.py) in the wire form only: `value` is a JSON number, the
unit sits in `unitOfMeasure` with a power-of-ten `multiplier`, and there is no `format`
(signed readings come beside the value in `signedMeterValue`, kept on the reading).
"""

from __future__ import annotations

import dataclasses
import math

from cpo_gateway.bridge.model import EnergySample, SignedReading
from cpo_gateway.csms import fields
from cpo_gateway.csms.frames import ErrorCode
from cpo_gateway.csms.signed import plain_wh, signed_reading

ENERGY_REGISTER = "Energy.Active.Import.Register"
_UNIT_FACTOR = {"wh": 1.0, "kwh": 1000.0}  # compared case-insensitively
_MAX_MULTIPLIER = 9  # |multiplier| beyond this is no meter's


def energy_samples(meter_value: object, path: str) -> tuple[EnergySample, ...]:
    """Readings of the whole-charger active import register, in Wh.

    Takes the sampled values whose measurand is Energy.Active.Import.Register (the default)
    without a phase, in Wh (the default) or kWh, times 10**multiplier. Other sampled values
    are not checked beyond being objects."""
    if not isinstance(meter_value, list):
        fields.wrong_type(path, "", "array", meter_value)
    samples: list[EnergySample] = []
    for i, mv in enumerate(meter_value):
        here = f"{path}[{i}]"
        mv = fields.as_object(mv, here)
        sampled = fields.req_list(mv, here, "sampledValue")
        timestamp: str | None = None
        for j, sv in enumerate(sampled):
            sv = fields.as_object(sv, f"{here}.sampledValue[{j}]")
            measurand = sv.get("measurand")
            if (measurand is not None and measurand != ENERGY_REGISTER) or sv.get(
                "phase"
            ) is not None:
                continue
            if timestamp is None:
                timestamp = fields.req_timestamp(mv, here)
            sample = EnergySample(timestamp, _wh(sv, f"{here}.sampledValue[{j}]"))
            smv = sv.get("signedMeterValue")
            if smv is not None:
                sample = dataclasses.replace(
                    sample, signed=_signed(smv, f"{here}.sampledValue[{j}]", sample.wh)
                )
            samples.append(sample)
    return tuple(samples)


def _signed(smv: object, path: str, wh: float) -> SignedReading | None:
    """signedMeterValue, or None (logged) when it is not one or does not fit a CDR."""
    if not isinstance(smv, dict):
        return signed_reading(f"{path}.signedMeterValue", None, "", None)
    return signed_reading(
        f"{path}.signedMeterValue",
        smv.get("signedMeterData"),
        plain_wh(wh),
        smv.get("encodingMethod"),
        smv.get("publicKey") or None,
        smv.get("signingMethod") or None,
    )


def _wh(sv: dict[str, object], path: str) -> float:
    if "value" not in sv:
        fields.missing(path, "value")
    value = sv["value"]
    if type(value) is str:  # a 1.6 habit some firmwares keep: read it, do not refuse it
        try:
            number = float(value)
        except ValueError:
            fields.wrong_type(path, "value", "number", value)
    elif type(value) is int or type(value) is float:
        number = float(value) if abs(value) < 1e300 else math.inf
    else:
        fields.wrong_type(path, "value", "number", value)
    unit, multiplier = "Wh", 0
    uom = sv.get("unitOfMeasure")
    if uom is not None:
        uom = fields.as_object(uom, f"{path}.unitOfMeasure")
        unit = fields.opt_str(uom, f"{path}.unitOfMeasure", "unit") or "Wh"
        multiplier = fields.opt_int(uom, f"{path}.unitOfMeasure", "multiplier") or 0
    factor = _UNIT_FACTOR.get(unit.lower())
    if factor is None:
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            f"{path}.unitOfMeasure",
            "unit",
            f"expected Wh or kWh for {ENERGY_REGISTER}, got {fields.show(unit)}",
        )
    if abs(multiplier) > _MAX_MULTIPLIER:
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            f"{path}.unitOfMeasure",
            "multiplier",
            f"expected -{_MAX_MULTIPLIER} to {_MAX_MULTIPLIER}, got {multiplier}",
        )
    wh = number * factor * 10.0**multiplier
    if not math.isfinite(wh):
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            path,
            "value",
            f"expected a finite number, got {fields.show(value)}",
        )
    return wh
