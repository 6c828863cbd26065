"""Live evidence of what runs on a connector: when the gateway last got meter readings.

A status is what a charger says; readings that keep coming for a transaction are what it
does. The status tracker lets such readings outweigh a stale or contradictory status, and the
ghost reconciler closes a transaction whose readings stopped while its connector reports
Available. Times are the gateway's own clock (when a message arrived), never the charger's:
a charger's clock is the thing not trusted here.

Kept in memory for the connectors in the catalogue only (a charger cannot grow it), and
forgotten when the transaction ends. After a restart nothing is known: callers count from
the moment the gateway started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from cpo_gateway.bridge.catalogue import Catalogue

# A connector's readings are "flowing" for two of its meter intervals as observed (the time
# between its last two readings), within these bounds: 3 minutes covers chargers that send a
# reading a minute, the hour cap a charger that once went quiet for long.
LIVE_FLOOR_S = 180.0
LIVE_CAP_S = 3600.0

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Reading:
    """The last reading on a connector that named a transaction."""

    transaction_id: int
    at: float  # gateway clock
    interval_s: float | None  # time since the reading before it for the same transaction

    @property
    def live_for_s(self) -> float:
        if self.interval_s is None:
            return LIVE_FLOOR_S
        return min(LIVE_CAP_S, max(LIVE_FLOOR_S, 2 * self.interval_s))


class Evidence:
    def __init__(self, catalogue: Catalogue, clock: Callable[[], float]) -> None:
        self._catalogue = catalogue
        self._clock = clock
        self._tx: dict[Key, Reading] = {}
        self._count: dict[Key, int] = {}  # readings so far, with or without a transaction
        self._changed: dict[Key, asyncio.Event] = {}

    def _known(self, charge_point: str, connector: int) -> bool:
        return self._catalogue.connector_at(charge_point, connector) is not None

    def reading(self, charge_point: str, connector: int, transaction_id: int | None) -> None:
        """Meter readings arrived for a connector (a transaction id when they named one)."""
        if not self._known(charge_point, connector):
            return
        key = (charge_point, connector)
        now = self._clock()
        self._count[key] = self._count.get(key, 0) + 1
        if transaction_id is not None:
            last = self._tx.get(key)
            interval = (
                now - last.at
                if last is not None and last.transaction_id == transaction_id
                else None
            )
            self._tx[key] = Reading(transaction_id, now, interval)
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    def started(self, charge_point: str, connector: int, transaction_id: int) -> None:
        """A transaction began: that is evidence too (its start reading)."""
        if self._known(charge_point, connector):
            self._tx[(charge_point, connector)] = Reading(transaction_id, self._clock(), None)

    def ended(self, charge_point: str, transaction_id: int) -> None:
        # Only the catalogue's connectors are kept: look at this charger's, not the fleet's.
        for conn in self._catalogue.connectors_of(charge_point):
            key = (charge_point, conn.connector)
            reading = self._tx.get(key)
            if reading is not None and reading.transaction_id == transaction_id:
                del self._tx[key]

    def last(self, charge_point: str, connector: int) -> Reading | None:
        return self._tx.get((charge_point, connector))

    def live(self, charge_point: str, connector: int) -> Reading | None:
        """The connector's transaction reading if readings are still flowing, else None."""
        reading = self._tx.get((charge_point, connector))
        if reading is None or self._clock() - reading.at > reading.live_for_s:
            return None
        return reading

    def readings(self, charge_point: str, connector: int) -> int:
        """How many readings arrived for the connector so far (for wait_reading)."""
        return self._count.get((charge_point, connector), 0)

    async def wait_reading(
        self, charge_point: str, connector: int, seen: int, within_s: float
    ) -> bool:
        """Wait until the connector has had more than `seen` readings; False when none came
        within `within_s` seconds."""
        if not self._known(charge_point, connector):
            return False  # readings are not kept for it: none can be awaited
        key = (charge_point, connector)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        for _ in range(1000):  # every pass waits for a reading or the deadline
            if self._count.get(key, 0) > seen:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            event = self._changed.setdefault(key, asyncio.Event())
            try:
                async with asyncio.timeout(left):
                    await event.wait()
            except TimeoutError:
                return False
        return False
