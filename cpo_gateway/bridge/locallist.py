"""The union of EMP whitelists pushed to chargers (SendLocalList), so they authorize cards
even while cut off from the gateway.

One push per change per charger: a charger that holds the current whitelist version is left
alone. A push that fails is retried with exponential back-off (RETRY_BASE_S doubling up to
RETRY_CAP_S); after MAX_FAILURES failures of the same version the charger is left alone until
the whitelist changes or the charger connects or boots again. A charger that says its local
list is switched off gets no push at all. Each charger's outcome is kept in the store (the CLI's
`charger local-list` and /metrics read it).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from enum import StrEnum

from cpo_gateway import logs
from cpo_gateway.bridge.model import AuthStatus, CommandStatus
from cpo_gateway.bridge.ports import ChargerControl, LocalListRecord
from cpo_gateway.bridge.storage import LocalListStore

log = logs.get(__name__)
MAX_FAILURES = 6
RETRY_BASE_S = 60.0  # the retry job runs every minute
RETRY_CAP_S = 3600.0
DISABLED = "disabled"


class ListState(StrEnum):
    """Where a charger stands with the whitelist (the /metrics gauge's label)."""

    CURRENT = "current"
    BEHIND = "behind"  # a push is due
    BACKING_OFF = "backing_off"
    GAVE_UP = "gave_up"
    DISABLED = "disabled"
    NOT_SUPPORTED = "not_supported"


def list_state(record: LocalListRecord, version: int, now: float) -> ListState:
    if not record.supported:
        return ListState.NOT_SUPPORTED
    if version == 0 or record.version >= version:
        return ListState.CURRENT
    if record.failed_version == version:
        if record.result == DISABLED:
            return ListState.DISABLED
        if record.failures >= MAX_FAILURES:
            return ListState.GAVE_UP
        if record.failures and record.next_at is not None and now < record.next_at:
            return ListState.BACKING_OFF
    return ListState.BEHIND


def retry_delay(failures: int) -> float:
    """Seconds before the next try after `failures` failures in a row."""
    return min(RETRY_BASE_S * 2 ** max(0, failures - 1), RETRY_CAP_S)


class LocalListPusher:
    def __init__(
        self,
        store: LocalListStore,
        chargers: ChargerControl,
        connected: Callable[[], Iterable[str]],
        *,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._chargers = chargers
        self._connected = connected
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        # Pushes at once across chargers: a reconnect storm must not starve Boot answers.
        self._slots = asyncio.Semaphore(8)
        self._entries: tuple[int, list[tuple[str, AuthStatus]]] = (-1, [])
        self.outcomes: dict[str, int] = {}  # push outcomes by result, for /metrics

    async def push(self, charge_point: str, *, fresh: bool = False) -> CommandStatus | None:
        """Bring one charger's list up to date; None when nothing was due.

        fresh: the charger has just connected or booted, so earlier failures are forgiven."""
        # One push at a time per charger: chunks of two versions must never interleave.
        lock = self._locks.get(charge_point)
        if lock is None:
            lock = self._locks[charge_point] = asyncio.Lock()
        async with lock:
            if fresh:
                await self._forgive(charge_point)
            # Most chargers hold the current list: they never queue for a slot.
            if await self._due(charge_point) is None:
                return None
            async with self._slots:
                return await self._push(charge_point)

    async def _forgive(self, charge_point: str) -> None:
        record = await self._store.local_list_record(charge_point)
        if record.failures or record.result == DISABLED:
            await self._store.save_local_list_record(
                dataclasses.replace(record, failures=0, next_at=None, failed_version=0)
            )

    async def _due(self, charge_point: str) -> tuple[int, LocalListRecord] | None:
        """(whitelist version, the charger's record) if a push is due now."""
        version = await self._store.whitelist_version()
        record = await self._store.local_list_record(charge_point)
        if list_state(record, version, self._clock()) is not ListState.BEHIND:
            return None
        return version, record

    async def _union(self, version: int) -> list[tuple[str, AuthStatus]]:
        """The entries of one whitelist version, read and built once for every charger."""
        if self._entries[0] != version:
            uids = await self._store.whitelist_union()
            self._entries = (version, [(uid, AuthStatus.ACCEPTED) for uid in uids])
        return self._entries[1]

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def _push(self, charge_point: str) -> CommandStatus | None:
        due = await self._due(charge_point)  # again: it may have moved on meanwhile
        if due is None:
            return None
        version, record = due
        now = self._clock()
        if await self._chargers.local_list_enabled(charge_point) is False:
            # Not a failure: nothing to retry until the charger connects again.
            self._count(DISABLED)
            await self._store.save_local_list_record(
                dataclasses.replace(
                    record,
                    result=DISABLED,
                    detail="the charger's local list is switched off",
                    failures=0,
                    failed_version=version,
                    next_at=None,
                    tried_at=now,
                )
            )
            return None
        entries = await self._union(version)
        result = await self._chargers.send_local_list(
            charge_point, record.ocpp_version + 1, entries
        )
        self._count(result.status.value)
        if result.status is CommandStatus.ACCEPTED:
            last = result.data.get("listVersion")
            held = last if isinstance(last, int) else record.ocpp_version + 1
            new = dataclasses.replace(
                record, version=version, ocpp_version=held, failures=0, next_at=None
            )
        elif result.status is CommandStatus.NOT_SUPPORTED:
            new = dataclasses.replace(record, supported=False, failures=0, next_at=None)
        else:
            failures = (record.failures if record.failed_version == version else 0) + 1
            retry = now + retry_delay(failures) if failures < MAX_FAILURES else None
            new = dataclasses.replace(
                record, failures=failures, failed_version=version, next_at=retry
            )
        new = dataclasses.replace(
            new, result=result.status.value, detail=result.detail[:200], tried_at=now
        )
        await self._store.save_local_list_record(new)
        if result.status is CommandStatus.ACCEPTED:
            log.info(
                "locallist.pushed",
                charge_point_id=charge_point,
                version=version,
                entries=len(entries),
            )
        else:
            log.warning(
                "locallist.push_failed",
                charge_point_id=charge_point,
                version=version,
                entries=len(entries),
                result=result.status.value,
                detail=result.detail,
                failures=new.failures,
                gave_up=new.failures >= MAX_FAILURES,
            )
        return result.status

    async def push_all(self) -> int:
        """Push to every connected charger that is due; returns how many were updated."""
        updated = 0
        for cp in list(self._connected()):
            if await self.push(cp) is CommandStatus.ACCEPTED:
                updated += 1
        return updated

    async def states(self) -> dict[ListState, int]:
        """Chargers the store knows, by where they stand with the whitelist."""
        version = await self._store.whitelist_version()
        now = self._clock()
        counts = dict.fromkeys(ListState, 0)
        for record in await self._store.local_list_records():
            counts[list_state(record, version, now)] += 1
        return counts
