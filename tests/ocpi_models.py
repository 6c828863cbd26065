"""Check rendered OCPI 2.2.1 objects against two sets of models the project did not write.

- `ocpi-types` (code generated from the OCPI 2.2.1 schemas; a dev dependency): `from_dict`
  insists on every required field, its JSON type and every enum value; its `to_dict` writes
  back only the fields it knows, so a round trip that changes nothing also proves no field
  is misspelt or unknown.
- `extrawest-ocpi` (the pydantic schemas of a FastAPI OCPI implementation): string lengths
  (CiString(36), String(45), ...), DateTime parsing, list members. It pins pydantic 1.10 and
  FastAPI 0.101, so it lives in the OCPI peers' own environment (tests/peers/.venv-ocpi,
  made by scripts/setup); one validator process (tests/peers/ocpi_validate.py) serves the
  whole test session. Without that environment only the first check runs
  (`test_ocpi_models.py` then skips its test that the second one is there).
"""

from __future__ import annotations

import atexit
import json
import subprocess
from pathlib import Path
from typing import IO, Any

import ocpi_types.v2_2_1 as generated

PEERS = Path(__file__).resolve().parent / "peers"
PEER_PYTHON = PEERS / ".venv-ocpi" / "bin" / "python"
GENERATED: dict[str, Any] = {
    "Location": generated.Location,
    "Evse": generated.Evse,
    "Connector": generated.Connector,
    "Tariff": generated.Tariff,
    "Session": generated.Session,
    "Cdr": generated.Cdr,
}


class InvalidObject(AssertionError):
    pass


class _Extrawest:
    """The validator process, started on first use and kept for the session."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None

    @property
    def available(self) -> bool:
        return PEER_PYTHON.is_file()

    def check(self, kind: str, body: dict[str, Any]) -> str | None:
        """None when valid, else the models' complaint."""
        stdin, stdout = self._pipes()
        stdin.write(json.dumps({"kind": kind, "body": body}) + "\n")
        stdin.flush()
        answer = json.loads(stdout.readline())
        return None if answer["ok"] else str(answer["error"])

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        if self._proc is None:
            self._proc = subprocess.Popen(
                [str(PEER_PYTHON), str(PEERS / "ocpi_validate.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            atexit.register(self._stop)
            assert self._proc.stdout is not None
            assert json.loads(self._proc.stdout.readline()) == {"ready": True}
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()


EXTRAWEST = _Extrawest()


def validate(kind: str, body: dict[str, Any]) -> None:
    """Raise unless `body` is a valid OCPI 2.2.1 `kind` for both model sets."""
    round_trip = GENERATED[kind].from_dict(body).to_dict()
    if round_trip != body:
        raise InvalidObject(f"ocpi-types: {_diff(body, round_trip)}")
    if EXTRAWEST.available:
        complaint = EXTRAWEST.check(kind, body)
        if complaint is not None:
            raise InvalidObject(f"extrawest-ocpi: {complaint}")


def _diff(sent: dict[str, Any], back: dict[str, Any]) -> str:
    keys = sorted(set(sent) | set(back))
    return "; ".join(
        f"{k}: sent {sent.get(k, '<absent>')!r}, model kept {back.get(k, '<absent>')!r}"
        for k in keys
        if sent.get(k) != back.get(k)
    )
