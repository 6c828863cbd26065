"""Energy readings out of OCPP 1.6 MeterValue lists (MeterValues, StopTransaction)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import NoReturn

from cpo_gateway.bridge.model import EnergySample
from cpo_gateway.csms import fields
from cpo_gateway.csms.frames import ErrorCode
from cpo_gateway.csms.signed import encoding_of, plain_wh, signed_reading

ENERGY_REGISTER = "Energy.Active.Import.Register"
_UNIT_FACTOR = {"wh": 1.0, "kwh": 1000.0}  # compared case-insensitively: "kwh" is seen


def energy_samples(
    meter_value: object, path: str = "MeterValues.meterValue"
) -> tuple[EnergySample, ...]:
    """Readings of the whole-charger active import register, in Wh.

    Takes the sampled values whose measurand is Energy.Active.Import.Register (the default),
    without a phase (per-phase registers would count the energy again), in Raw format (the
    default), with unit Wh (the default) or kWh. Sampled values of other measurands are not
    checked beyond being objects: they are not used. A SignedData value of the register is
    kept on the Raw reading of the same MeterValue (alone, it has no reading to sign).
    """
    if not isinstance(meter_value, list):
        fields.wrong_type(path, "", "array", meter_value)
    samples: list[EnergySample] = []
    for i, mv in enumerate(meter_value):
        if not isinstance(mv, dict):
            fields.wrong_type(f"{path}[{i}]", "", "object", mv)
        timestamp: str | None = None  # read only when the MeterValue holds a register value
        first_raw: int | None = None  # index in samples of this MeterValue's first reading
        signed: tuple[int, object] | None = None  # (index in sampledValue, blob)
        sampled = mv.get("sampledValue")
        if not isinstance(sampled, list):
            if "sampledValue" not in mv:
                fields.missing(f"{path}[{i}]", "sampledValue")
            fields.wrong_type(f"{path}[{i}]", "sampledValue", "array", sampled)
        for j, sv in enumerate(sampled):
            if not isinstance(sv, dict):
                fields.wrong_type(f"{path}[{i}].sampledValue[{j}]", "", "object", sv)
            measurand = sv.get("measurand")
            if (measurand is not None and measurand != ENERGY_REGISTER) or sv.get(
                "phase"
            ) is not None:
                continue
            if sv.get("format") == "SignedData":
                signed = signed or (j, sv.get("value"))
                continue
            if timestamp is None:
                timestamp = _timestamp(mv, path, i)
            first_raw = len(samples) if first_raw is None else first_raw
            samples.append(EnergySample(timestamp, _wh(sv, path, i, j)))
        if signed is not None and first_raw is not None:
            j, blob = signed
            reading = signed_reading(
                f"{path}[{i}].sampledValue[{j}]",
                blob,
                plain_wh(samples[first_raw].wh),
                encoding_of(blob) if isinstance(blob, str) else None,
            )
            samples[first_raw] = dataclasses.replace(samples[first_raw], signed=reading)
    return tuple(samples)


def _timestamp(mv: dict[str, object], path: str, i: int) -> str:
    value = mv.get("timestamp")
    if type(value) is str and fields.is_iso_datetime(value):
        return value
    return fields.req_timestamp(mv, f"{path}[{i}]")  # raises, naming the full path


def _wh(sv: dict[str, object], path: str, i: int, j: int) -> float:
    """The sampled value in Wh. This runs per sample, so paths are built only on errors."""
    unit = sv.get("unit")
    factor = 1.0 if unit is None else _UNIT_FACTOR.get(unit.lower()) if type(unit) is str else None
    value = sv.get("value")
    if factor is not None:
        if type(value) is str:
            with contextlib.suppress(ValueError):
                wh = float(value) * factor
                if math.isfinite(wh):
                    return wh
        elif type(value) is int or type(value) is float:
            with contextlib.suppress(OverflowError):  # ints beyond a double, given a dict
                wh = float(value) * factor
                if math.isfinite(wh):
                    return wh
    _bad_sample(sv, f"{path}[{i}].sampledValue[{j}]")


def _bad_sample(sv: dict[str, object], path: str) -> NoReturn:
    """Raise the error that describes why _wh could not read this sampled value."""
    unit = sv.get("unit")
    if unit is not None and not isinstance(unit, str):
        fields.wrong_type(path, "unit", "string", unit)
    if unit is not None and unit.lower() not in _UNIT_FACTOR:
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            path,
            "unit",
            f"expected Wh or kWh for {ENERGY_REGISTER}, got {fields.show(unit)}",
        )
    if "value" not in sv:
        fields.missing(path, "value")
    value = sv["value"]
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        fields.wrong_type(path, "value", "decimal string", value)
    fields.fail(
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        path,
        "value",
        f"expected a decimal number of {unit or 'Wh'}, got {fields.show(value)}",
    )
