"""Delivering the outbox to EMPs: back-off with full jitter, Retry-After, dead letters.

An EMP that refuses our key is paused as a whole (its messages stay pending, none is
dead-lettered for it): 30 s, doubling to 10 minutes, then one message probes whether the key
works again; `resume` (a reload with a new key) ends the pause at once.

Rows are claimed for this node for `claim_s` when they are handed out (several nodes may
deliver from one database). A row is sent only in the first half of its claim: one whose turn
comes later (a long queue behind a slow EMP) is given back unsent and claimed again, so no
request is still running when another node may take the row over.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cpo_gateway import logs
from cpo_gateway.bridge.model import DeliveryStatus
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.ports import EmpLink, OutboxItem
from cpo_gateway.bridge.storage import DeliveryStore

log = logs.get(__name__)
STATUS_KIND = Owed.EVSE_STATUS
PAUSE_BASE_S = 30.0
PAUSE_MAX_S = 600.0
PAUSED = "EMP paused:"  # how a held message's last_error starts
# Answers that got past the EMP's key check (a 503 says nothing about the key).
_KEY_ACCEPTED = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.REJECTED})


@dataclass(slots=True)
class EmpPause:
    """An EMP whose answers say our key is wrong: nothing is sent to it before `until`."""

    until: float
    detail: str
    strikes: int


def backoff_s(attempts: int, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempts)]."""
    return rand() * min(cap_s, base_s * (2 ** min(attempts, 40)))


class Deliverer:
    def __init__(
        self,
        store: DeliveryStore,
        link: EmpLink,
        *,
        station_of_evse: Callable[[str], str | None],
        base_backoff_s: float,
        max_backoff_s: float,
        retry_window_s: float,
        batch_size: int,
        concurrency: dict[str, int],
        clock: Callable[[], float],
        rand: Callable[[], float] = random.random,
        claim_s: float = 60.0,
    ) -> None:
        self._store = store
        self._link = link
        self._station_of = station_of_evse
        self._base = base_backoff_s
        self._cap = max_backoff_s
        self._window = retry_window_s
        self._batch = batch_size
        self._claim_s = claim_s
        self._limits = {emp: asyncio.Semaphore(n) for emp, n in concurrency.items()}
        # One pass per EMP at a time: a scheduled pass and the shutdown flush never send the
        # same rows twice, and a slow EMP holds up only its own queue.
        self._passes = {emp: asyncio.Lock() for emp in concurrency}
        self._clock = clock
        self._rand = rand
        self._pauses: dict[str, EmpPause] = {}
        self.delivered = 0
        self.dead = 0
        # The EMPs' answers by (EMP, kind, how it fared), for /metrics.
        self.results: Counter[tuple[str, str, DeliveryStatus]] = Counter()

    @property
    def paused(self) -> dict[str, str]:
        """EMPs paused because they refuse our key, with what they answered."""
        return {emp: pause.detail for emp, pause in self._pauses.items()}

    async def resume(self, emp: str) -> None:
        """End a pause now (our key for that EMP changed): its held messages are due at once."""
        if self._pauses.pop(emp, None) is not None:
            log.info("emp.resumed", emp=emp, reason="key changed")
        await self._store.release_held(emp, PAUSED, self._clock())

    @property
    def emps(self) -> tuple[str, ...]:
        return tuple(self._limits)

    async def tick(self) -> int:
        """One pass over every EMP's due rows; returns how many were delivered."""
        results = await asyncio.gather(*(self.tick_emp(emp) for emp in self._limits))
        return sum(results)

    async def tick_emp(self, emp: str) -> int:
        """One pass over at most batch_size due rows of one EMP, sent at most `concurrency`
        at a time; returns how many were delivered."""
        async with self._passes[emp]:
            now = self._clock()
            limit = self._batch
            pause = self._pauses.get(emp)
            if pause is not None:
                if now < pause.until:
                    return 0
                limit = 1  # one message finds out whether the key works again
            items = await self._store.due(emp, now, limit, lease_s=self._claim_s)
            if not items:
                return 0
            # Statuses wait for their station: load that set only when a status is due.
            posted: set[str] = set()
            if any(item.kind == STATUS_KIND for item in items):
                posted = await self._store.delivered_stations(emp)
            outcomes = await asyncio.gather(*(self._one(emp, item, posted) for item in items))
            delivered = sum(outcomes)
            self.delivered += delivered
            return delivered

    async def _one(self, emp: str, item: OutboxItem, posted: set[str]) -> bool:
        """Send one row and record how it fared; True when it was delivered."""
        now = self._clock()
        if item.kind == STATUS_KIND:
            station = self._station_of(item.key)
            if station is None:
                await self._dead(emp, item, "the EVSE is in no station of the catalogue", now)
                return False
            if station not in posted:
                # The EMP only takes statuses of stations it has received.
                if now - item.created_at >= self._window:
                    await self._dead(emp, item, f"station {station} was never posted", now)
                else:
                    await self._store.postpone(
                        item.id, now + 5.0, "waiting for its station to be posted"
                    )
                return False
        result = None
        async with self._limits[emp]:
            pause = self._pauses.get(emp)
            sent_at = self._clock()
            late = (
                item.claimed_until is not None and sent_at > item.claimed_until - self._claim_s / 2
            )
            if not late and (pause is None or sent_at >= pause.until):
                result = await self._link.deliver(emp, item.kind, item.payload)
        if late:  # its turn came too late in its claim: the next pass claims it afresh
            await self._store.release(item.id)
            log.info("outbox.claim_short", id=item.id, emp=emp, kind=item.kind)
            return False
        now = self._clock()
        if result is None:  # the EMP refused our key while this one waited its turn
            assert pause is not None
            await self._store.postpone(item.id, pause.until, f"{PAUSED} {pause.detail}")
            return False
        self.results[emp, item.kind, result.status] += 1
        if result.status is DeliveryStatus.UNAUTHORIZED:
            until = self._pause(emp, result.detail, now)
            await self._store.postpone(item.id, until, f"{PAUSED} {result.detail}")
            return False
        if result.status in _KEY_ACCEPTED and self._pauses.pop(emp, None) is not None:
            log.info("emp.resumed", emp=emp, reason="it accepts the key again")
        if result.status is DeliveryStatus.DELIVERED:
            # Marked as soon as the answer is in: the marks of answers arriving together share
            # one group commit, and a crash re-sends only what was in flight, not the pass.
            await self._store.mark_delivered([item.id], now)
            log.info(
                "outbox.delivered",
                id=item.id,
                emp=emp,
                kind=item.kind,
                key=item.key,
                attempts=item.attempts + 1,
                ms=round((now - sent_at) * 1000, 1),
            )
            return True
        if result.status is DeliveryStatus.RETRY and now - item.created_at < self._window:
            delay = max(
                backoff_s(item.attempts, self._base, self._cap, self._rand),
                result.retry_after_s or 0.0,
            )
            await self._store.mark_retry(item.id, now + delay, result.detail)
            log.info(
                "outbox.retry",
                id=item.id,
                emp=emp,
                kind=item.kind,
                in_s=round(delay, 2),
                detail=result.detail,
            )
            return False
        if result.status is DeliveryStatus.RETRY:
            await self._dead(emp, item, f"retry window exceeded; last: {result.detail}", now)
        else:
            await self._dead(emp, item, result.detail or "rejected", now)
        return False

    def _pause(self, emp: str, detail: str, now: float) -> float:
        pause = self._pauses.get(emp)
        if pause is not None and now < pause.until:
            return pause.until  # another answer of the same pass
        strikes = 1 if pause is None else pause.strikes + 1
        until = now + min(PAUSE_MAX_S, PAUSE_BASE_S * 2 ** min(strikes - 1, 20))
        self._pauses[emp] = EmpPause(until, detail, strikes)
        if strikes == 1:
            log.error(
                "emp.key_rejected",
                emp=emp,
                detail=detail,
                fix=f"set the right api_key for [[emp]] {emp!r} and reload (SIGHUP); "
                "its messages are kept and sent once the EMP accepts the key",
            )
        return until

    async def _dead(self, emp: str, item: OutboxItem, error: str, now: float) -> None:
        await self._store.mark_dead(item.id, error, now)
        self.dead += 1
        log.warning("outbox.dead_letter", id=item.id, emp=emp, kind=item.kind, detail=error)
