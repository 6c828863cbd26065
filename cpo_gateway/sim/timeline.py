"""A readable timeline of both sides: the EMPs (OIOI and OCPI) on the left, OCPP on the right.

Events come from several places (the sandbox EMP's record of what the gateway sent it, each
simulated charger's record of what it received and what its calls were answered, the demo's
own requests, requests that reached the gateway from outside, such as a curl the user typed,
and the sandbox OCPI eMSP's record of what its receivers got)
and are printed in the order they happened: each carries its wall-clock time and is held back
briefly so that a late-reported earlier event still comes first. So a StopTransaction's answer
stands before the session-post it caused, and an rfid-verify before the Authorize it decided.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TextIO

from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp.sandbox import Received, SandboxEmsp

WIDTH = 58
HOLD_S = 0.3  # how long an event waits for earlier ones reported later
Inbound = Callable[[], Mapping[tuple[str, int], int]]


class RecordingCharger(Protocol):
    """What the timeline reads of a simulated charger, of either OCPP version."""

    charge_point_id: str
    received: list[tuple[str, dict[str, Any]]]
    received_at: list[float]
    answers: list[tuple[str, dict[str, Any]]]
    answered_at: list[float]


def _short(payload: Any, limit: int = 44) -> str:
    text = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Timeline:
    def __init__(
        self,
        out: TextIO,
        emp: SandboxEmp,
        chargers: Sequence[RecordingCharger],
        *,
        inbound: Inbound | None = None,
        emsp: SandboxEmsp | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`inbound`: the gateway's count of OIOI requests by (call, code), so requests that
        did not come from the demo itself are shown too. `emsp`: an OCPI eMSP whose received
        requests are shown beside the OIOI EMP's."""
        self._out = out
        self._emp = emp
        self._emsp = emsp
        self._seen_emsp = 0
        self._chargers = chargers
        self._inbound = inbound
        self._clock = clock
        self._t0 = clock()
        self._seen_emp = 0
        self._seen: dict[str, tuple[int, int]] = {}
        self._own: dict[str, int] = {}  # the demo's own requests not yet counted, by call
        self._inbound_seen: dict[tuple[str, int], int] = {}
        self._pending: list[tuple[float, int, str]] = []
        self._order = itertools.count()

    def _push(self, at: float, text: str) -> None:
        heapq.heappush(self._pending, (at, next(self._order), text))

    def _line(self, at: float, left: str = "", right: str = "") -> None:
        self._push(at, f"{left[:WIDTH]:<{WIDTH}} | {right}")

    def header(self) -> None:
        self._out.write(
            f"{'time':>8}  {'OIOI EMP and OCPI eMSP <-> gateway':<{WIDTH}} | "
            "OCPP (gateway <-> chargers)\n"
        )
        self._out.write("-" * (WIDTH + 11) + "+" + "-" * 50 + "\n")

    def chapter(self, title: str) -> None:
        self.flush()
        self._out.write(f"\n== {title}\n")
        self._out.flush()

    def note(self, text: str) -> None:
        self._push(self._clock(), f"   ({text})")

    def emp_request(self, call: str) -> float:
        """The demo is about to send `call` as the EMP: not one from outside. Its time."""
        self._own[call] = self._own.get(call, 0) + 1
        return self._clock()

    def emp_call(self, call: str, body: Any, status: int, answer: Any, sent_at: float) -> None:
        """A request the demo sent to the gateway as the EMP (at `sent_at`), and its answer."""
        result = answer.get("result", {}) if isinstance(answer, dict) else {}
        code = result.get("code")
        rest = (
            {k: v for k, v in answer.items() if k != "result"} if isinstance(answer, dict) else {}
        )
        self._line(sent_at, f"EMP -> gw  {call} {_short(body, 34)}")
        self._line(
            self._clock(),
            f"EMP <- gw  HTTP {status} code {code} {_short(rest, 26) if rest else ''}",
        )

    def now(self) -> float:
        return self._clock()

    def emsp_call(self, request: str, answer: dict[str, Any], sent_at: float) -> None:
        """A request the demo sent to the gateway as the OCPI eMSP, and the envelope answered."""
        data = answer.get("data")
        shown = data.get("result") if isinstance(data, dict) and "result" in data else None
        if shown is None and isinstance(data, list):
            shown = f"{len(data)} objects"
        self._line(sent_at, f"eMSP -> gw {request}")
        self._line(
            self._clock(),
            f"eMSP <- gw HTTP {answer.get('_http_status')} {answer.get('status_code')} "
            f"{shown or answer.get('status_message', '')}",
        )

    def poll(self, *, hold_s: float = HOLD_S) -> None:
        """Collect what happened since the last poll; print what is older than `hold_s`."""
        self._collect()
        cutoff = self._clock() - hold_s
        while self._pending and self._pending[0][0] <= cutoff:
            at, _, text = heapq.heappop(self._pending)
            self._out.write(f"{at - self._t0:7.2f}s  {text}\n")
        self._out.flush()

    def flush(self) -> None:
        """Print everything collected so far."""
        self.poll(hold_s=-1.0)

    def _collect(self) -> None:
        requests = self._emp.requests
        for rec in requests[self._seen_emp :]:
            inner = rec.body.get(rec.call, rec.body) if isinstance(rec.body, dict) else {}
            self._line(rec.received_at, f"gw -> EMP  {rec.call} {_summary(rec.call, inner)}")
            self._line(
                rec.received_at, f"gw <- EMP  HTTP {rec.answered_status} code {rec.answered_code}"
            )
        self._seen_emp = len(requests)
        if self._emsp is not None:
            received = self._emsp.received
            for delivered in received[self._seen_emsp :]:
                self._line(delivered.at, f"gw -> eMSP {_ocpi_summary(delivered)}")
            self._seen_emsp = len(received)
        for cp in self._chargers:
            sent, got = self._seen.get(cp.charge_point_id, (0, 0))
            for (action, payload), at in zip(cp.received[got:], cp.received_at[got:], strict=True):
                self._line(at, right=f"gw -> {cp.charge_point_id} {action} {_short(payload)}")
            for (action, payload), at in zip(cp.answers[sent:], cp.answered_at[sent:], strict=True):
                self._line(
                    at, right=f"{cp.charge_point_id} -> gw {action}, answered {_short(payload, 38)}"
                )
            self._seen[cp.charge_point_id] = (len(cp.answers), len(cp.received))
        if self._inbound is not None:
            now = self._clock()
            for (call, code), count in sorted(self._inbound().items()):
                new = count - self._inbound_seen.get((call, code), 0)
                self._inbound_seen[(call, code)] = count
                # The demo's own requests are shown by emp_call: the rest came from outside.
                own = min(new, self._own.get(call, 0))
                self._own[call] = self._own.get(call, 0) - own
                for _ in range(new - own):
                    self._line(now, f"EMP -> gw  {call} (from outside the demo) -> code {code}")

    async def follow(self, interval: float = 0.05) -> None:
        while True:
            self.poll()
            await asyncio.sleep(interval)


def _summary(call: str, inner: dict[str, Any]) -> str:
    if call == "station-post":
        station = inner.get("station", {})
        return f"{station.get('id')} ({len(station.get('connectors', []))} connectors)"
    if call == "connector-post-status":
        return f"{inner.get('connector-id')} {inner.get('status')}"
    if call == "session-post":
        session = str(inner.get("session-id", ""))[:8]
        user = inner.get("user", {}).get("identifier")
        return f"{session} {inner.get('energy-consumed')} kWh {user}"
    if call == "rfid-verify":
        return str(inner.get("rfid"))
    return _short(inner, 30)


def _ocpi_summary(got: Received) -> str:
    """One request the eMSP's receivers got: the method, the object and what matters of it."""
    body = got.body if isinstance(got.body, dict) else {}
    tail = got.path.rsplit(f"/{got.module}/", 1)[-1]
    if got.module == "locations" and got.method == "PATCH":
        return f"PATCH EVSE {tail.rsplit('/', 1)[-1]} {body.get('status')}"
    if got.module == "locations":
        return f"PUT location {body.get('id')} ({len(body.get('evses', []))} EVSEs)"
    if got.module == "sessions":
        status = f" {body['status']}" if "status" in body else ""
        return f"{got.method} session {tail.rsplit('/', 1)[-1][:8]}{status} {body.get('kwh')} kWh"
    if got.module == "cdrs":
        token = body.get("cdr_token", {}).get("uid")
        return f"POST cdr {str(body.get('id'))[:8]} {body.get('total_energy')} kWh {token}"
    if got.module == "commands":
        return f"CommandResult {tail.split('/', 1)[0]} {body.get('result')}"
    return f"{got.method} {got.module} {_short(body, 30)}"
