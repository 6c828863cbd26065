"""The adapters' view of a latency histogram: `labels(...).observe(seconds)`.

app.py passes prometheus_client Histograms (which fit this shape); parts built without one
(the CLI's offline core, tests of a single part) get NO_TIMINGS. Nothing here imports a
metrics library, so the adapters do not either.
"""

from __future__ import annotations

from typing import Protocol


class Timing(Protocol):
    def observe(self, amount: float) -> None: ...


class Timings(Protocol):
    def labels(self, *labelvalues: str) -> Timing: ...


class _Discard:
    __slots__ = ()

    def observe(self, amount: float) -> None:
        pass

    def labels(self, *labelvalues: str) -> _Discard:
        return self


NO_TIMINGS: Timings = _Discard()
