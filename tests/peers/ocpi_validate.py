"""Validate OCPI 2.2.1 objects with extrawest-ocpi's pydantic schemas, in the peer's own
virtual environment (tests/peers/.venv-ocpi: the package pins pydantic 1.10 and FastAPI
0.101, which the gateway does not use).

Reads JSON lines {"kind": "Location" | "Evse" | "Connector" | "Tariff" | "Session" | "Cdr",
"body": {...}} and answers each with one JSON line: {"ok": true} or {"ok": false, "error":
"..."}; prints {"ready": true} first.
"""

from __future__ import annotations

import json
import sys

from py_ocpi.modules.cdrs.v_2_2_1 import schemas as cdrs
from py_ocpi.modules.locations.v_2_2_1 import schemas as locations
from py_ocpi.modules.sessions.v_2_2_1 import schemas as sessions
from py_ocpi.modules.tariffs.v_2_2_1 import schemas as tariffs

MODELS = {
    "Location": locations.Location,
    "Evse": locations.EVSE,
    "Connector": locations.Connector,
    "Tariff": tariffs.Tariff,
    "Session": sessions.Session,
    "Cdr": cdrs.Cdr,
}


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            MODELS[request["kind"]].parse_obj(request["body"])
        except Exception as exc:  # noqa: BLE001 - the verdict is the answer
            print(json.dumps({"ok": False, "error": str(exc)}), flush=True)
        else:
            print(json.dumps({"ok": True}), flush=True)


if __name__ == "__main__":
    main()
