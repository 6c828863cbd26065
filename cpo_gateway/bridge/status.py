"""Connector status toward the EMP: mapping, EVSE aggregation, debounce, offline grace,
and which reported state a connector is in.

Which report sets a connector's state (per connector, the charger as a whole included):

- A report's timestamp is *trusted* when it parses and lies within a sane window: not
  before the charger's last boot as the gateway saw it (the moment its boot message arrived,
  on the gateway's clock) minus BOOT_MARGIN_S, or before EARLIEST_PLAUSIBLE when no boot was
  ever seen; and not more than FUTURE_LIMIT_S ahead of the gateway's clock. A clock unset
  after boot stamps 1970 (or 2000): such stamps are implausible, so untrusted.
- The *reference* is the trusted timestamp of the last applied report of that connector, if
  it is from the charger's current boot (not before the boot floor above); none otherwise.
- A report with a trusted timestamp is applied unless it is older than the reference (equal
  stamps keep arrival order); an older one is recorded for the history but not applied (a
  late retry of an older message).
- A report with an untrusted timestamp is applied, in arrival order, only while there is no
  reference: it is then all the charger has told since it booted. Once a report with a
  trusted timestamp was applied since the boot, an untrusted one is recorded, not applied:
  a status queued while the clock was unset and sent after a current one must not win.
- A report without a timestamp (OCPP makes it optional) makes no claim about its time: it is
  applied in arrival order and leaves the reference as it is.

A report not applied is kept apart (with the reason) for the record, pruned with the outbox.

Live evidence outweighs a contradicting status: a connector reported Unavailable or Faulted
while meter readings for an open transaction on it are still flowing (see evidence.py) stays
Occupied toward the EMP, and the contradiction is logged. When the readings stop (or the
transaction ends) the reported state shows again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from cpo_gateway import logs
from cpo_gateway.bridge.catalogue import Catalogue, Connector
from cpo_gateway.bridge.clock import to_epoch
from cpo_gateway.bridge.evidence import Evidence
from cpo_gateway.bridge.model import ConnectorState, EvseStatus, StatusReport, StatusUpdate
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.bridge.storage import StatusStore

log = logs.get(__name__)
STATUS_KIND = Owed.EVSE_STATUS
# Trust window of a report's own timestamp (see the module docstring). The margin absorbs
# the difference between the charger's clock and ours around its boot; a clock left unset
# is decades off, so any margin of minutes tells the two apart.
BOOT_MARGIN_S = 300.0
FUTURE_LIMIT_S = 300.0
EARLIEST_PLAUSIBLE = 1577836800.0  # 2020-01-01T00:00:00Z, when no boot was ever seen
_BROKEN = frozenset({ConnectorState.UNAVAILABLE, ConnectorState.FAULTED})

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


def reported_state(states: Iterable[ConnectorState | None]) -> ConnectorState | None:
    """The charger's state behind an EVSE, before the partner-facing mapping: of the
    connectors sharing it, a fault first (it tells a broken EVSE from a switched-off
    one), else the first state known."""
    known = [s for s in states if s is not None]
    if ConnectorState.FAULTED in known:
        return ConnectorState.FAULTED
    return known[0] if known else None


class StatusTracker:
    def __init__(
        self,
        store: StatusStore,
        catalogue: Catalogue,
        partners: Mapping[str, str],  # EMP name -> partner identifier
        *,
        detailed: frozenset[str] = frozenset(),  # EMPs told a fault from a switch-off
        debounce_s: float,
        offline_grace_s: float,
        clock: Callable[[], float],
        evidence: Evidence | None = None,
        connected_anywhere: Callable[[str], bool] | None = None,
    ) -> None:
        """`connected_anywhere(charger)`: connected to this gateway or, in a cluster, to
        another node (whose status engine then owes its EVSEs' statuses, not this one)."""
        self._store = store
        self._anywhere = connected_anywhere
        self._catalogue = catalogue
        self._partners = partners
        self._detailed = detailed
        self._debounce_s = debounce_s
        self._grace_s = offline_grace_s
        self._clock = clock
        self._states: dict[tuple[str, int], ConnectorState | None] = {}
        self._connected: set[str] = set()
        self._offline_since: dict[str, float] = {}
        self._posted: dict[str, EvseStatus] = {}
        # The reported state behind each posted status, since this process started.
        self._posted_reported: dict[str, ConnectorState | None] = {}
        self._dirty: dict[str, float] = {}  # EVSE ID -> when it may be flushed
        self._evidence = evidence or Evidence(catalogue, clock)
        self._boots: dict[str, float] = {}  # charger -> its last boot, gateway clock
        self._reference: dict[tuple[str, int], float] = {}  # trusted stamp last applied
        # Connectors whose Unavailable/Faulted is contradicted by this open transaction.
        self._held: dict[tuple[str, int], int] = {}

    async def load(self) -> None:
        states = await self._store.connector_states()
        for key, value in states.items():
            self._states[key] = _state(value)
        self._posted = {k: EvseStatus(v) for k, v in (await self._store.evse_statuses()).items()}
        self._reference = await self._store.connector_trusted_at()
        for cp, booted_at in (await self._store.boot_times()).items():
            booted = to_epoch(booted_at)
            if booted is not None:
                self._boots[cp] = booted
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

    def booted(self, charge_point: str) -> None:
        """The charger booted now: its reports are judged against this moment from now on."""
        self._boots[charge_point] = self._clock()

    def _floor(self, charge_point: str) -> float:
        booted = self._boots.get(charge_point)
        return EARLIEST_PLAUSIBLE if booted is None else booted - BOOT_MARGIN_S

    def _judge(self, report: StatusReport, now: float) -> tuple[bool, float | None, str]:
        """(applied, trusted timestamp or None, why) for a report, by the module's rule."""
        key = (report.charge_point_id, report.connector_id)
        floor = self._floor(report.charge_point_id)
        reference = self._reference.get(key)
        if reference is not None and reference < floor:
            reference = None  # from before the charger's last boot
        stamp = to_epoch(report.timestamp)
        if stamp is None:
            return True, None, "no timestamp: arrival order"
        if floor <= stamp <= now + FUTURE_LIMIT_S:
            if reference is not None and stamp < reference:
                return False, stamp, "older than the status applied"
            return True, stamp, "in order"
        if reference is not None:
            return False, None, "implausible timestamp after a trusted one"
        return True, None, "implausible timestamp, nothing trusted yet: arrival order"

    async def report(self, report: StatusReport) -> None:
        now = self._clock()
        key = (report.charge_point_id, report.connector_id)
        applied, trusted, why = self._judge(report, now)
        state_value = report.state.value if report.state else None
        await self._store.record_connector_state(
            report.charge_point_id,
            report.connector_id,
            state_value,
            report.error_code,
            report.timestamp,
            # A report without a trusted stamp leaves the reference as it was.
            trusted_at=trusted if trusted is not None else self._reference.get(key),
            ignored=None if applied else why,
            now=now,
        )
        if not applied:
            log.info(
                "status.not_applied",
                charge_point_id=report.charge_point_id,
                connector_id=report.connector_id,
                state=state_value,
                timestamp=report.timestamp,
                reason=why,
            )
            return
        if trusted is not None and (
            report.connector_id == 0
            or self._catalogue.connector_at(report.charge_point_id, report.connector_id)
        ):
            self._reference[key] = trusted  # kept for the catalogue's connectors only
        if report.connector_id == 0:
            return  # the charger as a whole: its connectors report for themselves
        self._states[key] = report.state
        self._held.pop(key, None)
        if report.state in _BROKEN:
            await self._check_contradiction(report)
        self._touch(report.charge_point_id, report.connector_id, self._debounce_s)

    async def _check_contradiction(self, report: StatusReport) -> None:
        cp, connector = report.charge_point_id, report.connector_id
        reading = self._evidence.live(cp, connector)
        if reading is None:
            return
        tx = await self._store.transaction(reading.transaction_id)
        if tx is None or tx.stopped_at is not None:
            return
        if (tx.charge_point, tx.connector) != (cp, connector):
            return
        self._held[(cp, connector)] = tx.id
        log.warning(
            "status.contradicted_by_meter_values",
            charge_point_id=cp,
            connector_id=connector,
            state=report.state.value if report.state else None,
            error_code=report.error_code,
            transaction_id=tx.id,
            kept=EvseStatus.OCCUPIED.value,
        )

    def connected(self, charge_point: str) -> None:
        self._connected.add(charge_point)
        self._offline_since.pop(charge_point, None)
        self._touch(charge_point, None, self._debounce_s)

    def disconnected(self, charge_point: str) -> None:
        self._connected.discard(charge_point)
        self._offline_since[charge_point] = self._clock()
        self._touch(charge_point, None, self._grace_s)

    def _held_until(self, conn: Connector) -> float | None:
        """Until when live evidence keeps this connector Occupied; None if it does not."""
        key = (conn.charge_point, conn.connector)
        held = self._held.get(key)
        if held is None or self._states.get(key) not in _BROKEN:
            return None
        reading = self._evidence.live(conn.charge_point, conn.connector)
        if reading is None or reading.transaction_id != held:
            return None
        return reading.at + reading.live_for_s

    def _connector_status(self, conn: Connector) -> EvseStatus:
        online = self.is_online(conn.charge_point)
        if online and self._held_until(conn) is not None:
            return EvseStatus.OCCUPIED
        return map_state(self._states.get((conn.charge_point, conn.connector)), online)

    def current(self, evse_id: str) -> EvseStatus:
        return aggregate([self._connector_status(c) for c in self._catalogue.evse(evse_id)])

    def reported(self, evse_id: str) -> ConnectorState | None:
        """The charger's last state behind the EVSE (see reported_state)."""
        conns = self._catalogue.evse(evse_id)
        return reported_state(self._states.get((c.charge_point, c.connector)) for c in conns)

    async def flush(self, *, force: bool = False) -> int:
        """Queue the EVSE status owed for EVSEs whose debounced status changed."""
        now = self._clock()
        due = [e for e, at in self._dirty.items() if at <= now]
        if force:
            due = list(self._catalogue.evse_ids())
        queued = 0
        for evse in due:
            self._dirty.pop(evse, None)
            if not self._catalogue.evse(evse):
                continue  # removed from the stations file by a reload
            if self._elsewhere(evse):
                # Another node holds its chargers and posts their statuses; look again
                # later, in case they come here or go offline everywhere.
                self._dirty[evse] = now + max(self._grace_s, 1.0)
                continue
            self._recheck_held(evse)
            status, reported = self.current(evse), self.reported(evse)
            owed_to = self._owed_status(evse, status, reported, force)
            if owed_to is None:
                continue
            rows = [
                NewOutbox(emp, STATUS_KIND, evse, _update(evse, status, reported, partner))
                for emp, partner in owed_to.items()
            ]
            await self._store.set_evse_status(evse, status.value, rows, now)
            self._posted[evse] = status
            self._posted_reported[evse] = reported
            queued += 1
            log.info("status.changed", evse_id=evse, status=status.value)
        return queued

    def _elsewhere(self, evse: str) -> bool:
        """Whether every charger of the EVSE is connected to another node of a cluster."""
        anywhere = self._anywhere
        if anywhere is None:
            return False
        chargers = {c.charge_point for c in self._catalogue.evse(evse)}
        return all(cp not in self._connected and anywhere(cp) for cp in chargers)

    def _owed_status(
        self, evse: str, status: EvseStatus, reported: ConnectorState | None, force: bool
    ) -> Mapping[str, str] | None:
        """Who is owed the EVSE's status now: everyone when it changed (or when forced);
        when only the state behind an Offline EVSE changed (switched off to faulted, or
        back), the partners told the two apart; None when nothing changed."""
        if force or self._posted.get(evse) is not status:
            return self._partners
        if (
            status is EvseStatus.OFFLINE
            and self._posted_reported.get(evse, reported) is not reported
        ):
            return {e: p for e, p in self._partners.items() if e in self._detailed}
        return None

    def _recheck_held(self, evse: str) -> None:
        """An EVSE held Occupied by live evidence is looked at again when that evidence
        would run out, so the reported state shows once readings stop."""
        until = [u for c in self._catalogue.evse(evse) if (u := self._held_until(c)) is not None]
        if until:
            due = min(until) + 0.001
            self._dirty[evse] = min(self._dirty.get(evse, due), due)


def _state(value: str | None) -> ConnectorState | None:
    try:
        return ConnectorState(value) if value is not None else None
    except ValueError:
        return None


def _update(
    evse_id: str, status: EvseStatus, reported: ConnectorState | None, partner: str
) -> dict[str, object]:
    u = StatusUpdate(evse_id, status, partner)
    return {
        "evse_id": u.evse_id,
        "status": u.status.value,
        "reported": None if reported is None else reported.value,
        "partner_identifier": u.partner_identifier,
    }
