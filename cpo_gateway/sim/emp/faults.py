"""Scripted failures of the sandbox EMP: the answers a flaky real EMP gives."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cpo_gateway.sim.emp.wire import SYSTEM_ERROR


@dataclass(frozen=True, slots=True)
class Fault:
    """One forced answer. `body` replaces the JSON result body (e.g. garbage or HTML)."""

    status: int = 503
    code: int = SYSTEM_ERROR
    retry_after: str | None = None
    body: bytes | None = None

    @property
    def answered_code(self) -> int | None:
        return None if self.body is not None else self.code


class FaultPlan:
    """Queues of forced answers: one for any request, one per call name. First in, first out."""

    def __init__(self) -> None:
        self._any: deque[Fault] = deque()
        self._per_call: dict[str, deque[Fault]] = {}

    def add(self, fault: Fault, n: int, call: str | None = None) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        queue = self._any if call is None else self._per_call.setdefault(call, deque())
        queue.extend([fault] * n)

    def take_any(self) -> Fault | None:
        return self._any.popleft() if self._any else None

    def take_for(self, call: str) -> Fault | None:
        queue = self._per_call.get(call)
        return queue.popleft() if queue else None

    def pending(self) -> int:
        return len(self._any) + sum(len(q) for q in self._per_call.values())

    def clear(self) -> None:
        self._any.clear()
        self._per_call.clear()
