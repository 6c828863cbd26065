"""The union of EMP whitelists pushed to chargers (SendLocalList), so they authorize cards
even while cut off from the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from cpo_gateway import logs
from cpo_gateway.bridge.model import AuthStatus, CommandStatus
from cpo_gateway.bridge.ports import ChargerControl
from cpo_gateway.bridge.store import StorePort

log = logs.get(__name__)


class LocalListPusher:
    def __init__(
        self, store: StorePort, chargers: ChargerControl, connected: Callable[[], Iterable[str]]
    ) -> None:
        self._store = store
        self._chargers = chargers
        self._connected = connected
        self._locks: dict[str, asyncio.Lock] = {}
        # Pushes at once across chargers: a reconnect storm must not starve Boot answers.
        self._slots = asyncio.Semaphore(8)
        self._entries: tuple[int, list[tuple[str, AuthStatus]]] = (-1, [])

    async def push(self, charge_point: str) -> CommandStatus | None:
        """Bring one charger's list up to date; None when nothing was needed."""
        # One push at a time per charger: chunks of two versions must never interleave.
        lock = self._locks.get(charge_point)
        if lock is None:
            lock = self._locks[charge_point] = asyncio.Lock()
        async with lock:
            # Most chargers hold the current list: they never queue for a slot.
            if await self._behind(charge_point) is None:
                return None
            async with self._slots:
                return await self._push(charge_point)

    async def _behind(self, charge_point: str) -> tuple[int, int, int] | None:
        """(whitelist version, version pushed, OCPP listVersion held) if a push is due."""
        version = await self._store.whitelist_version()
        have, ocpp_version, supported = await self._store.local_list_state(charge_point)
        if not supported or version == 0 or have >= version:
            return None
        return version, have, ocpp_version

    async def _union(self, version: int) -> list[tuple[str, AuthStatus]]:
        """The entries of one whitelist version, read and built once for every charger."""
        if self._entries[0] != version:
            uids = await self._store.whitelist_union()
            self._entries = (version, [(uid, AuthStatus.ACCEPTED) for uid in uids])
        return self._entries[1]

    async def _push(self, charge_point: str) -> CommandStatus | None:
        behind = await self._behind(charge_point)  # again: it may have moved on meanwhile
        if behind is None:
            return None
        version, have, ocpp_version = behind
        entries = await self._union(version)
        result = await self._chargers.send_local_list(charge_point, ocpp_version + 1, entries)
        if result.status is CommandStatus.ACCEPTED:
            last = result.data.get("listVersion")
            held = last if isinstance(last, int) else ocpp_version + 1
            await self._store.set_local_list_state(charge_point, version, held, True)
        elif result.status is CommandStatus.NOT_SUPPORTED:
            await self._store.set_local_list_state(charge_point, have, ocpp_version, False)
        # Anything but accepted leaves the charger on an older list (tried again every minute).
        report = log.info if result.status is CommandStatus.ACCEPTED else log.warning
        report(
            "locallist.pushed",
            charge_point_id=charge_point,
            version=version,
            entries=len(entries),
            result=result.status.value,
            detail=result.detail,
        )
        return result.status

    async def push_all(self) -> int:
        """Push to every connected charger that is behind; returns how many were updated."""
        updated = 0
        for cp in list(self._connected()):
            if await self.push(cp) is CommandStatus.ACCEPTED:
                updated += 1
        return updated
