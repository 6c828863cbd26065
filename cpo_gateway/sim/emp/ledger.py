"""What the sandbox EMP knows: stations, connector statuses, CDRs, and how it answers each call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cpo_gateway.bridge.ids import try_normalise_uid
from cpo_gateway.sim.emp.wire import SUCCESS, bad_request, require_obj, require_str

EVSE_NOT_FOUND = 181
EVCO_NOT_FOUND = 191
STATUSES = frozenset({"Available", "Occupied", "Offline", "Reserved", "Unknown"})


@dataclass(frozen=True, slots=True)
class Answer:
    """A business outcome: always HTTP 200, with this result code."""

    code: int
    message: str = "Success."


@dataclass
class EmpLedger:
    verify_codes: dict[str, int] = field(default_factory=dict)
    unknown_uid_code: int = EVCO_NOT_FOUND
    require_station: bool = True
    stations: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    cdrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    _station_posts: int = field(default=0, repr=False)
    _evse_index: set[str] = field(default_factory=set, repr=False)
    _evse_index_key: tuple[int, int, int] | None = field(default=None, repr=False)

    def answer(self, call: str, body: dict[str, Any]) -> Answer:
        """The business answer to a well-formed envelope; WireError (400 / 230) for bad fields."""
        handler = self._handlers().get(call)
        if handler is None:
            raise bad_request(f"{call}: not a call this EMP accepts")
        return handler(body)

    def known_evse_ids(self) -> set[str]:
        ids: set[str] = set()
        for station in self.stations.values():
            for connector in station.get("connectors") or ():
                if isinstance(connector, dict) and isinstance(connector.get("id"), str):
                    ids.add(connector["id"])
        return ids

    def _knows_evse(self, evse_id: str) -> bool:
        # Stations only change on station-post: rebuild the index then, not per status.
        key = id(self.stations), len(self.stations), self._station_posts
        if self._evse_index_key != key:
            self._evse_index, self._evse_index_key = self.known_evse_ids(), key
        return evse_id in self._evse_index

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Answer]]:
        return {
            "station-post": self._station_post,
            "connector-post-status": self._connector_post_status,
            "session-post": self._session_post,
            "rfid-verify": self._rfid_verify,
        }

    def _station_post(self, body: dict[str, Any]) -> Answer:
        station = require_obj(body, "station", "station-post")
        station_id = require_str(station, "id", "station-post.station")
        require_str(body, "partner-identifier", "station-post")
        self._station_posts += 1
        connectors = station.get("connectors", [])
        if not isinstance(connectors, list):
            raise bad_request("station-post.station.connectors: expected an array")
        for index, connector in enumerate(connectors):
            if not isinstance(connector, dict):
                raise bad_request(f"station-post.station.connectors[{index}]: expected an object")
            require_str(connector, "id", f"station-post.station.connectors[{index}]")
        # The spec's field list and its example disagree on where "deleted" lives (inside the
        # station in the example, beside it in the list): honour both.
        if station.get("deleted") is True or body.get("deleted") is True:
            self.stations.pop(station_id, None)
            return Answer(SUCCESS)
        self.stations[station_id] = station
        return Answer(SUCCESS)

    def _connector_post_status(self, body: dict[str, Any]) -> Answer:
        path = "connector-post-status"
        evse_id = require_str(body, "connector-id", path)
        status = require_str(body, "status", path)
        require_str(body, "partner-identifier", path)
        if status not in STATUSES:
            allowed = ", ".join(sorted(STATUSES))
            raise bad_request(f"{path}.status: expected one of {allowed}, got {status!r}")
        # A real EMP only accepts statuses of EVSEs from stations the same partner posted.
        if self.require_station and not self._knows_evse(evse_id):
            return Answer(EVSE_NOT_FOUND, "EVSE not found.")
        self.statuses[evse_id] = status
        return Answer(SUCCESS)

    def _session_post(self, body: dict[str, Any]) -> Answer:
        path = "session-post"
        session_id = require_str(body, "session-id", path)
        require_str(body, "connector-id", path)
        require_str(body, "partner-identifier", path)
        user = require_obj(body, "user", path)
        require_str(user, "identifier-type", f"{path}.user")
        require_str(user, "identifier", f"{path}.user")
        interval = require_obj(body, "session-interval", path)
        require_str(interval, "start", f"{path}.session-interval")
        # Idempotent on session-id: a repeat is counted, never stored twice. The newest body is
        # kept, so a CDR posted at session start is replaced by the final one.
        if session_id in self.cdrs:
            self.duplicates += 1
        self.cdrs[session_id] = body
        return Answer(SUCCESS)

    def _rfid_verify(self, body: dict[str, Any]) -> Answer:
        uid = require_str(body, "rfid", "rfid-verify")
        # The spec requires UIDs upper case and zero-padded to 8, 14 or 20: a CPO that sends
        # anything else has a bug worth surfacing, so it is refused rather than looked up.
        if try_normalise_uid(uid) != uid:
            raise bad_request(
                f"rfid-verify.rfid: expected upper-case hex of length 8, 14 or 20, got {uid!r}"
            )
        code = self.verify_codes.get(uid, self.unknown_uid_code)
        return Answer(code, "Success." if code == SUCCESS else "RFID not accepted.")
