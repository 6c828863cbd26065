"""A readable timeline of both protocols side by side: OIOI on the left, OCPP on the right."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

from cpo_gateway.sim.charger import SimCharger
from cpo_gateway.sim.emp import SandboxEmp

WIDTH = 58


def _short(payload: Any, limit: int = 44) -> str:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Timeline:
    def __init__(self, out: TextIO, emp: SandboxEmp, chargers: Sequence[SimCharger]) -> None:
        self._out = out
        self._emp = emp
        self._chargers = chargers
        self._t0 = time.monotonic()
        self._seen_emp = 0
        self._seen: dict[str, tuple[int, int]] = {}

    def _line(self, left: str = "", right: str = "") -> None:
        stamp = f"{time.monotonic() - self._t0:7.2f}s"
        self._out.write(f"{stamp}  {left[:WIDTH]:<{WIDTH}} | {right}\n")
        self._out.flush()

    def header(self) -> None:
        self._out.write(
            f"{'time':>8}  {'OIOI (EMP <-> gateway)':<{WIDTH}} | OCPP (gateway <-> chargers)\n"
        )
        self._out.write("-" * (WIDTH + 11) + "+" + "-" * 50 + "\n")

    def chapter(self, title: str) -> None:
        self.poll()
        self._out.write(f"\n== {title}\n")
        self._out.flush()

    def note(self, text: str) -> None:
        self._out.write(f"{time.monotonic() - self._t0:7.2f}s     ({text})\n")
        self._out.flush()

    def emp_call(self, call: str, body: Any, status: int, answer: Any) -> None:
        """A request the EMP sent to the gateway, and what it got."""
        self._line(f"EMP -> gw  {call} {_short(body, 34)}")
        result = answer.get("result", {}) if isinstance(answer, dict) else {}
        rest = (
            {k: v for k, v in answer.items() if k != "result"} if isinstance(answer, dict) else {}
        )
        self._line(
            f"EMP <- gw  HTTP {status} code {result.get('code')} {_short(rest, 26) if rest else ''}"
        )

    def poll(self) -> None:
        """Print what happened since the last poll: gateway -> EMP requests, charger traffic."""
        requests = self._emp.requests
        for rec in requests[self._seen_emp :]:
            inner = rec.body.get(rec.call, rec.body) if isinstance(rec.body, dict) else {}
            self._line(f"gw -> EMP  {rec.call} {_short(_summary(rec.call, inner), 30)}")
            self._line(f"gw <- EMP  HTTP {rec.answered_status} code {rec.answered_code}")
        self._seen_emp = len(requests)
        for cp in self._chargers:
            sent, got = self._seen.get(cp.charge_point_id, (0, 0))
            # Commands from the gateway usually come first: the charger's calls react to them.
            for action, payload in cp.received[got:]:
                self._line(right=f"gw -> {cp.charge_point_id} {action} {_short(payload)}")
            for action, payload in cp.answers[sent:]:
                self._line(
                    right=f"{cp.charge_point_id} -> gw {action}, answered {_short(payload, 38)}"
                )
            self._seen[cp.charge_point_id] = (len(cp.answers), len(cp.received))

    async def follow(self, interval: float = 0.05) -> None:
        while True:
            self.poll()
            await asyncio.sleep(interval)


def _summary(call: str, inner: dict[str, Any]) -> Any:
    if call == "station-post":
        station = inner.get("station", {})
        return {"id": station.get("id"), "connectors": len(station.get("connectors", []))}
    if call == "session-post":
        return {
            "session-id": str(inner.get("session-id", ""))[:8],
            "kWh": inner.get("energy-consumed"),
            "user": inner.get("user", {}).get("identifier"),
        }
    return inner
