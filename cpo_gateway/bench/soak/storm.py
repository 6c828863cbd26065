"""The reconnect storm: N chargers connected, all dropped at once, all back within a window.

The gateway runs in this process with a lag monitor on its event loop; the chargers run in a
child process (soak_fleet) so their own work does not count as the gateway's lag. Shared by
tests/test_reliability_storm.py (short) and `scripts/soak storm` (long).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog
from websockets.protocol import State

from cpo_gateway.app import Gateway
from cpo_gateway.bench.soak.gateway import OUTBOUND_KEY, write_config
from cpo_gateway.config import load_config
from cpo_gateway.runtime import Collector
from cpo_gateway.sim.emp.sandbox import SandboxEmp

_TICK_S = 0.01


class LagMonitor:
    """Sleeps 10 ms in a loop and records how late each wake-up is: the longest time the
    event loop was busy with something else."""

    def __init__(self) -> None:
        self.max_lag_s = 0.0
        self.samples = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lag-monitor")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            before = loop.time()
            await asyncio.sleep(_TICK_S)
            self.max_lag_s = max(self.max_lag_s, loop.time() - before - _TICK_S)
            self.samples += 1


@dataclass
class StormReport:
    chargers: int
    window_s: float
    opened: int = 0
    reconnected: int = 0
    registered: int = 0  # chargers in the gateway's registry while the fleet holds
    open_sockets: int = 0  # websockets the server holds open at that moment
    extra_per_charger: int = 0  # chargers with more than one open socket
    call_errors: int = 0
    connect_retries: int = 0
    handler_errors: int = 0
    task_failures: int = 0
    max_lag_ms: float = 0.0
    lag_samples: int = 0
    all_back_after_s: float = 0.0
    seconds: float = 0.0
    error_events: list[str] = field(default_factory=list)
    timed_out: bool = False  # the fleet was not all back within the time limit

    @property
    def ok(self) -> bool:
        n = self.chargers
        return (
            self.opened == n
            and self.reconnected == n
            and self.registered == n
            and self.open_sockets == n
            and self.extra_per_charger == 0
            and self.call_errors == 0
            and self.handler_errors == 0
            and self.task_failures == 0
            and self.max_lag_ms <= 100
            and not self.timed_out
        )

    def lines(self) -> list[str]:
        return [
            f"storm: chargers={self.chargers} window_s={self.window_s} opened={self.opened} "
            f"reconnected={self.reconnected} registered={self.registered} "
            f"open_sockets={self.open_sockets} extra_per_charger={self.extra_per_charger}",
            f"storm: call_errors={self.call_errors} handler_errors={self.handler_errors} "
            f"task_failures={self.task_failures} connect_retries={self.connect_retries}",
            f"storm: max_event_loop_lag_ms={self.max_lag_ms:.1f} (samples={self.lag_samples}) "
            f"all_back_after_s={self.all_back_after_s} total_s={self.seconds:.1f} "
            f"timed_out={self.timed_out} ok={self.ok}",
        ]


async def _fleet(url: str, chargers: int, window_s: float, seed: int) -> Any:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cpo_gateway.bench.soak.fleet",
        url,
        "1",
        str(chargers),
        str(window_s),
        str(seed),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def run_storm(
    workdir: Path,
    *,
    chargers: int = 200,
    window_s: float = 10.0,
    seed: int = 1,
    time_limit_s: float = 600.0,
    progress: bool = False,
) -> StormReport:
    report = StormReport(chargers=chargers, window_s=window_s)
    started = time.monotonic()
    async with SandboxEmp(api_key=OUTBOUND_KEY) as emp:
        config = write_config(workdir, emp_url=emp.url, chargers=chargers, log_level="warning")
        # Paced collection as in `cpo-gateway run` (scripts/soak also runs its event loop).
        gateway = Gateway(load_config(config, {}), collector=Collector())
        monitor = LagMonitor()
        with structlog.testing.capture_logs() as events:
            await gateway.start()
            try:
                assert gateway.csms is not None and gateway.csms.port
                # The first station-post of the whole catalogue is not part of the storm.
                await emp.wait_for(lambda: len(emp.stations) == chargers, timeout=time_limit_s)
                url = f"ws://127.0.0.1:{gateway.csms.port}/ocpp"
                proc = await _fleet(url, chargers, window_s, seed)
                try:
                    async with asyncio.timeout(time_limit_s):
                        await _follow(proc, report, gateway, monitor)
                except TimeoutError:
                    report.timed_out = True
                    report.registered = len(gateway.csms.connections)
                    proc.kill()
                    await proc.wait()
            finally:
                await monitor.stop()
                await gateway.stop()
        report.max_lag_ms = round(monitor.max_lag_s * 1000, 1)
        report.lag_samples = monitor.samples
        report.task_failures = gateway.tasks.failures
        bad = [e for e in events if e.get("log_level") in ("error", "critical")]
        report.handler_errors = len(bad)
        report.error_events = [str(e.get("event")) for e in bad[:10]]
    report.seconds = time.monotonic() - started
    if progress:
        print("\n".join(report.lines()), flush=True)
    return report


async def _follow(proc: Any, report: StormReport, gateway: Gateway, monitor: LagMonitor) -> None:
    """Read the fleet's phases: lag is measured from the drop on, the first connections
    are not the storm."""
    await proc.stdout.readline()
    monitor.start()
    summary = orjson.loads(await proc.stdout.readline())
    report.opened = summary["opened"]
    report.reconnected = summary["reconnected"]
    report.call_errors = summary["call_errors"]
    report.connect_retries = summary["connect_retries"]
    report.all_back_after_s = summary["all_back_after_s"]
    await asyncio.sleep(1.0)  # replaced sockets finish closing
    _count(report, gateway)
    await monitor.stop()
    proc.stdin.write(b"done\n")
    await proc.stdin.drain()
    await proc.stdout.readline()
    await proc.wait()


def _count(report: StormReport, gateway: Gateway) -> None:
    assert gateway.csms is not None
    report.registered = len(gateway.csms.connections)
    server = gateway.csms._server  # the websockets Server: every socket, replaced ones too
    sockets = [c for c in server.connections if c.state is State.OPEN] if server else []
    report.open_sockets = len(sockets)
    per_charger: dict[str, int] = {}
    for ws in sockets:
        path = ws.request.path if ws.request is not None else ""
        per_charger[path] = per_charger.get(path, 0) + 1
    report.extra_per_charger = sum(1 for n in per_charger.values() if n > 1)
