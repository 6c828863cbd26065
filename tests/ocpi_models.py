"""Check rendered OCPI 2.2.1 objects against two sets of models the project did not write.

- `ocpi-types` (code generated from the OCPI 2.2.1 schemas): `from_dict` insists on every
  required field, its JSON type and every enum value; its `to_dict` writes back only the
  fields it knows, so a round trip that changes nothing also proves no field is misspelt
  or unknown.
- `extrawest-ocpi` (the pydantic schemas of a FastAPI OCPI implementation): string lengths
  (CiString(36), String(45), ...), DateTime parsing, list members.
"""

from __future__ import annotations

from typing import Any

import ocpi_types.v2_2_1 as generated
from py_ocpi.modules.cdrs.v_2_2_1 import schemas as xw_cdrs
from py_ocpi.modules.locations.v_2_2_1 import schemas as xw_locations
from py_ocpi.modules.sessions.v_2_2_1 import schemas as xw_sessions
from py_ocpi.modules.tariffs.v_2_2_1 import schemas as xw_tariffs

MODELS: dict[str, tuple[Any, Any]] = {
    "Location": (generated.Location, xw_locations.Location),
    "Evse": (generated.Evse, xw_locations.EVSE),
    "Connector": (generated.Connector, xw_locations.Connector),
    "Tariff": (generated.Tariff, xw_tariffs.Tariff),
    "Session": (generated.Session, xw_sessions.Session),
    "Cdr": (generated.Cdr, xw_cdrs.Cdr),
}


def validate(kind: str, body: dict[str, Any]) -> None:
    """Raise (AssertionError, ValueError, pydantic's ValidationError) unless `body` is a valid
    OCPI 2.2.1 `kind`."""
    gen, xw = MODELS[kind]
    round_trip = gen.from_dict(body).to_dict()
    assert round_trip == body, _diff(body, round_trip)
    xw.parse_obj(body)


def _diff(sent: dict[str, Any], back: dict[str, Any]) -> str:
    keys = sorted(set(sent) | set(back))
    return "; ".join(
        f"{k}: sent {sent.get(k, '<absent>')!r}, model kept {back.get(k, '<absent>')!r}"
        for k in keys
        if sent.get(k) != back.get(k)
    )
