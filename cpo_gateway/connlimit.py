"""Concurrent connections per source address and in total, for a listener of any protocol.

A listener asks `admit` for every accepted socket. At a cap, the connection idle longest is
recycled to make room (those that never completed a request go before those that did), so a
flood of idle or slow sockets from strangers cannot keep the rightful peer out; only when every
connection under the cap is busy with a request is the new one refused. The total cap keeps one
listener from taking all of the process's descriptors (see `descriptor_budget`).
"""

from __future__ import annotations

import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cpo_gateway import logs

log = logs.get(__name__)
C = TypeVar("C", bound=Hashable)
# A listener may take this share of the process's open-files limit; the rest is the margin for
# the other listeners (chargers), the database and the outbound HTTP clients.
DESCRIPTOR_SHARE = 0.25
_MAX_LOGGED_SOURCES = 10_000


def descriptor_budget(requested: int, share: float = DESCRIPTOR_SHARE) -> int:
    """`requested`, lowered to `share` of the soft open-files limit when that is smaller."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, int(soft * share)))


class _Idle(Generic[C]):
    """Idle connections of one scope, oldest first: never served ones, then served ones."""

    __slots__ = ("count", "fresh", "served")

    def __init__(self) -> None:
        self.count = 0  # open connections of the scope, idle or not
        self.fresh: OrderedDict[C, None] = OrderedDict()
        self.served: OrderedDict[C, None] = OrderedDict()

    def oldest(self) -> C | None:
        for queue in (self.fresh, self.served):
            for conn in queue:
                return conn
        return None

    def discard(self, conn: C) -> None:
        self.fresh.pop(conn, None)
        self.served.pop(conn, None)


@dataclass(frozen=True, slots=True)
class Admission(Generic[C]):
    admitted: bool
    recycle: C | None = None  # an idle connection the listener must close to make room


class ConnectionLimiter(Generic[C]):
    def __init__(
        self,
        listener: str,
        *,
        per_source: int,
        total: int,
        log_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listener = listener
        self.per_source = per_source
        self.total = total
        self._log_interval = log_interval_s
        self._clock = clock
        self._all: _Idle[C] = _Idle()
        self._sources: dict[str, _Idle[C]] = {}
        self._source_of: dict[C, str] = {}
        self._served: set[C] = set()
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}  # -> (logged at, suppressed)
        self.limited: dict[tuple[str, str], int] = {}  # (limit, outcome) -> count

    @property
    def open(self) -> int:
        return self._all.count

    def open_from(self, source: str) -> int:
        scope = self._sources.get(source)
        return scope.count if scope else 0

    def idle_from(self, source: str) -> int:
        scope = self._sources.get(source)
        return len(scope.fresh) + len(scope.served) if scope else 0

    def admit(self, conn: C, source: str) -> Admission[C]:
        """Register `conn` as open and idle, or refuse it. A recycled connection must be
        closed by the caller (and released when it is gone)."""
        scope = self._sources.get(source)
        recycle: C | None = None
        full: _Idle[C] | None = None
        limit = ""
        if scope is not None and scope.count >= self.per_source:
            limit, full = "per_source", scope
        elif self._all.count >= self.total:
            limit, full = "total", self._all
        if full is not None:
            recycle = full.oldest()
            self._note(source, limit, "refused" if recycle is None else "recycled_idle")
            if recycle is None:
                return Admission(admitted=False)
            self._forget(recycle)  # its slot is the new one's now, before it has closed
        scope = self._sources.setdefault(source, _Idle())
        scope.count += 1
        self._all.count += 1
        self._source_of[conn] = source
        self.idle(conn)
        return Admission(admitted=True, recycle=recycle)

    def busy(self, conn: C) -> None:
        """`conn` is serving a request: it is not recycled."""
        source = self._source_of.get(conn)
        if source is None:
            return
        self._all.discard(conn)
        self._sources[source].discard(conn)

    def idle(self, conn: C, *, served: bool = False) -> None:
        """`conn` waits for a request; `served`: it has completed one."""
        source = self._source_of.get(conn)
        if source is None:
            return
        if served:
            self._served.add(conn)
        kind = "served" if conn in self._served else "fresh"
        for scope in (self._all, self._sources[source]):
            scope.discard(conn)
            getattr(scope, kind)[conn] = None

    def release(self, conn: C) -> None:
        """`conn` is closed."""
        self._forget(conn)

    def _forget(self, conn: C) -> None:
        source = self._source_of.pop(conn, None)
        if source is None:
            return
        self._served.discard(conn)
        self._all.discard(conn)
        self._all.count -= 1
        scope = self._sources[source]
        scope.discard(conn)
        scope.count -= 1
        if scope.count == 0:
            del self._sources[source]

    def _note(self, source: str, limit: str, outcome: str) -> None:
        """Count a limit hit; log it once per source and limit per interval."""
        self.limited[(limit, outcome)] = self.limited.get((limit, outcome), 0) + 1
        now = self._clock()
        key = (source, limit)
        last = self._logged.get(key)
        if last is not None and now - last[0] < self._log_interval:
            self._logged[key] = (last[0], last[1] + 1)
            return
        if len(self._logged) >= _MAX_LOGGED_SOURCES:  # bounded under a spray of sources
            cutoff = now - self._log_interval
            self._logged = {k: v for k, v in self._logged.items() if v[0] >= cutoff}
            if len(self._logged) >= _MAX_LOGGED_SOURCES:
                self._logged.clear()
        self._logged[key] = (now, 0)
        log.warning(
            "security.connection_limit",
            listener=self.listener,
            source=source,
            limit=limit,
            cap=self.per_source if limit == "per_source" else self.total,
            outcome=outcome,
            suppressed_before=last[1] if last is not None else 0,
        )
