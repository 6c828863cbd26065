"""What the gateway owes a partner, in the core's own words: the outbox's kinds.

The outbox stores these names and a plain-dict payload; each partner adapter maps a kind to
its own calls and refuses kinds it does not carry. The payloads (all keys snake_case):

- STATION, key = station id: {"station": the catalogue's Station as a dict, charger-side
  numbering left out; "partner_identifier": str; "deleted": bool}
  (bridge/station_sync.py: station_payload / station_from_dict).
- EVSE_STATUS, key = EVSE ID: {"evse_id": str, "status": an EvseStatus value,
  "reported": the ConnectorState value the charger last reported behind it, before the
  partner-facing mapping (a fault first; None when none is known; absent in rows written
  before it was carried), "partner_identifier": str}. Coalesced: one pending row per partner and EVSE, rewritten
  in place by a newer status.
- SESSION, key = session id: a SessionUpdate as a dict (below). Coalesced like statuses:
  one pending row per partner and session, the newest state of the session.
- CDR, key = session id: a Cdr as a dict (bridge/cdr.py: cdr_to_dict / cdr_from_dict). The
  session id is the CDR's stable id: a retry or a replay carries the same one, so a
  partner that keys on it never bills twice.
- TARIFF, key = tariff id: {"tariff_id": str, "deleted": bool}, queued when a [[tariff]]
  table of the stations file is new, changed or removed (bridge/tariff_sync.py). The file is
  the tariff's record: an adapter renders the tariff in force when it delivers the row.
- COMMAND_RESULT, key = the gateway's own id of the command (unique: a partner may name two
  commands alike): a CommandOutcome as a dict (below), what a charger finally answered to a
  command the partner sent, for partners that take the answer apart from their request.
  Written before the partner hears "accepted", due at the deadline and reading "timeout";
  rewritten with the charger's answer, due at once (bridge/commands.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Owed(StrEnum):
    """The outbox's kinds (the values are what the database stores)."""

    STATION = "station"
    EVSE_STATUS = "evse-status"
    SESSION = "session-update"
    CDR = "cdr"
    COMMAND_RESULT = "command-result"
    TARIFF = "tariff"


# Kinds of which only the newest pending row per (partner, key) is worth sending.
COALESCED: tuple[Owed, ...] = (Owed.EVSE_STATUS, Owed.SESSION)


class SessionPhase(StrEnum):
    """Where a session stands in a SESSION update."""

    STARTED = "started"
    CHARGING = "charging"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """A session as a partner that follows it while it runs is told.

    `energy_kwh` is the energy delivered so far (None before the first reading); `start` and
    `stop` are RFC 3339 (stop None while it runs); `updated_at` is when the gateway wrote
    it (RFC 3339, our clock); `auth_path` how the driver was authorized (an AuthPath value,
    None when not recorded); `charge_point`/`connector` the charger's connector serving it."""

    session_id: str
    evse_id: str
    partner_identifier: str
    user_kind: str
    user_id: str
    phase: SessionPhase
    start: str
    updated_at: str
    stop: str | None = None
    energy_kwh: float | None = None
    auth_path: str | None = None
    charge_point: str | None = None
    connector: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionUpdate:
        energy = data.get("energy_kwh")
        auth, cp, connector = data.get("auth_path"), data.get("charge_point"), data.get("connector")
        return cls(
            session_id=str(data["session_id"]),
            evse_id=str(data["evse_id"]),
            partner_identifier=str(data["partner_identifier"]),
            user_kind=str(data["user_kind"]),
            user_id=str(data["user_id"]),
            phase=SessionPhase(data["phase"]),
            start=str(data["start"]),
            updated_at=str(data["updated_at"]),
            stop=None if data.get("stop") is None else str(data["stop"]),
            energy_kwh=float(energy) if isinstance(energy, int | float) else None,
            auth_path=None if auth is None else str(auth),
            charge_point=None if cp is None else str(cp),
            connector=connector if isinstance(connector, int) else None,
        )


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """A charger's final answer to a partner's command: `reference` is the partner's own
    name for the command (where it wants the answer), `command` what was asked (start,
    stop, unlock, ...), `result` a bridge.commands.Result value, `session_id` the session it
    concerns when there is one."""

    reference: str
    command: str
    result: str
    detail: str = ""
    session_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommandOutcome:
        session = data.get("session_id")
        return cls(
            reference=str(data["reference"]),
            command=str(data["command"]),
            result=str(data["result"]),
            detail=str(data.get("detail", "")),
            session_id=None if session is None else str(session),
        )
