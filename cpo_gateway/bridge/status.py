"""Connector status toward the EMP: mapping, EVSE aggregation, debounce, offline grace."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cpo_gateway import logs
from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.model import ConnectorState, EvseStatus, StatusReport, StatusUpdate
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.bridge.store import StorePort

log = logs.get(__name__)
STATUS_KIND = "connector-post-status"

MAPPING: dict[ConnectorState, EvseStatus] = {
    ConnectorState.AVAILABLE: EvseStatus.AVAILABLE,
    ConnectorState.PREPARING: EvseStatus.OCCUPIED,
    ConnectorState.CHARGING: EvseStatus.OCCUPIED,
    ConnectorState.SUSPENDED_EV: EvseStatus.OCCUPIED,
    ConnectorState.SUSPENDED_EVSE: EvseStatus.OCCUPIED,
    ConnectorState.FINISHING: EvseStatus.OCCUPIED,
    ConnectorState.RESERVED: EvseStatus.RESERVED,
    ConnectorState.UNAVAILABLE: EvseStatus.OFFLINE,
    ConnectorState.FAULTED: EvseStatus.OFFLINE,
}
# When connectors share an EVSE ID the most telling status wins.
_PRECEDENCE = (
    EvseStatus.OCCUPIED,
    EvseStatus.RESERVED,
    EvseStatus.AVAILABLE,
    EvseStatus.OFFLINE,
    EvseStatus.UNKNOWN,
)


def map_state(state: ConnectorState | None, online: bool) -> EvseStatus:
    if not online:
        return EvseStatus.OFFLINE
    return EvseStatus.UNKNOWN if state is None else MAPPING[state]


def aggregate(statuses: list[EvseStatus]) -> EvseStatus:
    for candidate in _PRECEDENCE:
        if candidate in statuses:
            return candidate
    return EvseStatus.UNKNOWN


class StatusTracker:
    def __init__(
        self,
        store: StorePort,
        catalogue: Catalogue,
        partners: Mapping[str, str],  # EMP name -> partner identifier
        *,
        debounce_s: float,
        offline_grace_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._partners = partners
        self._debounce_s = debounce_s
        self._grace_s = offline_grace_s
        self._clock = clock
        self._states: dict[tuple[str, int], ConnectorState | None] = {}
        self._connected: set[str] = set()
        self._offline_since: dict[str, float] = {}
        self._posted: dict[str, EvseStatus] = {}
        self._dirty: dict[str, float] = {}  # EVSE ID -> when it may be flushed

    async def load(self) -> None:
        states = await self._store.connector_states()
        for key, value in states.items():
            self._states[key] = _state(value)
        self._posted = {k: EvseStatus(v) for k, v in (await self._store.evse_statuses()).items()}
        now = self._clock()
        for cp in self._catalogue.charge_point_ids():
            self._offline_since[cp] = now  # nobody is connected at start: grace from now
        for evse in self._catalogue.evse_ids():
            self._dirty[evse] = now + self._grace_s

    def catalogue_changed(self) -> None:
        """After a reload: new chargers start their offline grace, new EVSEs get a first
        status once it has passed (as at start)."""
        now = self._clock()
        for cp in self._catalogue.charge_point_ids():
            if cp not in self._connected and cp not in self._offline_since:
                self._offline_since[cp] = now
        for evse in self._catalogue.evse_ids():
            if evse not in self._posted:
                self._dirty.setdefault(evse, now + self._grace_s)

    def state(self, charge_point: str, connector: int) -> ConnectorState | None:
        return self._states.get((charge_point, connector))

    def is_online(self, charge_point: str) -> bool:
        if charge_point in self._connected:
            return True
        since = self._offline_since.get(charge_point)
        return since is not None and self._clock() - since < self._grace_s

    def _touch(self, charge_point: str, connector: int | None, delay: float) -> None:
        due = self._clock() + delay
        for conn in self._catalogue.connectors_of(charge_point):
            if connector in (None, 0, conn.connector):
                self._dirty[conn.evse_id] = min(self._dirty.get(conn.evse_id, due), due)

    async def report(self, report: StatusReport) -> None:
        state_value = report.state.value if report.state else None
        await self._store.record_connector_state(
            report.charge_point_id,
            report.connector_id,
            state_value,
            report.error_code,
            report.timestamp,
        )
        if report.connector_id == 0:
            return  # the charger as a whole: its connectors report for themselves
        self._states[(report.charge_point_id, report.connector_id)] = report.state
        self._touch(report.charge_point_id, report.connector_id, self._debounce_s)

    def connected(self, charge_point: str) -> None:
        self._connected.add(charge_point)
        self._offline_since.pop(charge_point, None)
        self._touch(charge_point, None, self._debounce_s)

    def disconnected(self, charge_point: str) -> None:
        self._connected.discard(charge_point)
        self._offline_since[charge_point] = self._clock()
        self._touch(charge_point, None, self._grace_s)

    def current(self, evse_id: str) -> EvseStatus:
        return aggregate(
            [
                map_state(
                    self._states.get((c.charge_point, c.connector)), self.is_online(c.charge_point)
                )
                for c in self._catalogue.evse(evse_id)
            ]
        )

    async def flush(self, *, force: bool = False) -> int:
        """Queue connector-post-status for EVSEs whose debounced status changed."""
        now = self._clock()
        due = [e for e, at in self._dirty.items() if at <= now]
        if force:
            due = list(self._catalogue.evse_ids())
        queued = 0
        for evse in due:
            self._dirty.pop(evse, None)
            if not self._catalogue.evse(evse):
                continue  # removed from the stations file by a reload
            status = self.current(evse)
            if not force and self._posted.get(evse) is status:
                continue
            rows = [
                NewOutbox(emp, STATUS_KIND, evse, _update(evse, status, partner))
                for emp, partner in self._partners.items()
            ]
            await self._store.set_evse_status(evse, status.value, rows, now)
            self._posted[evse] = status
            queued += 1
            log.info("status.changed", evse_id=evse, status=status.value)
        return queued


def _state(value: str | None) -> ConnectorState | None:
    try:
        return ConnectorState(value) if value is not None else None
    except ValueError:
        return None


def _update(evse_id: str, status: EvseStatus, partner: str) -> dict[str, object]:
    u = StatusUpdate(evse_id, status, partner)
    return {
        "evse_id": u.evse_id,
        "status": u.status.value,
        "partner_identifier": u.partner_identifier,
    }
