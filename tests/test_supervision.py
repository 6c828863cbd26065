"""Supervised work: a long-lived task that ends ends the gateway (exit 70, the task named), and
the systemd watchdog is pinged only while the gateway's health check passes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cpo_gateway.app import Gateway, ServiceDied
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.systemd import Notifier
from tests.conftest import running_gateway, write_config

# The daemon as `python -m cpo_gateway run`, plus one thing only a test needs: SIGUSR1 cancels
# the task named in argv[1] from inside the daemon's own event loop (a task killed as a bug or a
# stray cancel would kill it).
KILLABLE = """
import asyncio, signal, sys
from cpo_gateway import cli

def kill(signum, frame):
    loop = asyncio.get_running_loop()
    for task in asyncio.all_tasks(loop):
        if task.get_name() == sys.argv[1]:
            loop.call_soon_threadsafe(task.cancel)

signal.signal(signal.SIGUSR1, kill)
sys.exit(cli.main(["run", "-c", sys.argv[2]]))
"""


def _events(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock, path


@pytest.mark.parametrize("task", ["csms-silence-check", "watchdog", "gc-pacing"])
def test_a_cancelled_long_lived_task_ends_the_daemon_with_70(tmp_path: Path, task: str) -> None:
    sock, path = _notify_socket(tmp_path)
    sock.settimeout(60)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, task, str(write_config(tmp_path))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"},
    )
    try:
        while not sock.recv(4096).decode().startswith("READY=1"):
            pass
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sock.close()
    assert proc.returncode == 70, out
    events = _events(out)
    died = [e for e in events if e["event"] == "gateway.task_died"]
    assert [e["task"] for e in died] == [task], out
    names = [e["event"] for e in events]
    # It stopped in order (the outbox flushed, the database closed), it did not just vanish.
    assert names.index("gateway.task_died") < names.index("gateway.stopping")
    assert names[-1] == "gateway.stopped", out


async def _until(predicate: object, what: str) -> None:
    assert callable(predicate)
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_long_lived_task_that_fails_stops_the_gateway(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    gateway = Gateway(load_config(write_config(tmp_path, emp_url=emp.url), {}))
    shutdown = asyncio.Event()
    run = asyncio.create_task(gateway.run(shutdown))
    await _until(lambda: gateway.started_at > 0 or run.done(), "the gateway to start")
    assert (await gateway.health())[0]

    async def broken() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("a bug in a loop")

    gateway.tasks.service(broken(), name="broken-loop")
    with pytest.raises(ServiceDied) as died:
        async with asyncio.timeout(30):
            await run
    assert died.value.task == "broken-loop" and died.value.exit_code == 70
    assert gateway.died == "broken-loop" and gateway.tasks.failures == 1
    assert shutdown.is_set() and gateway.tasks.services_ended == ["broken-loop"]
    assert not gateway.db.is_open  # stopped all the way down


async def test_the_watchdog_is_pinged_only_while_the_gateway_is_healthy(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    sock, path = _notify_socket(tmp_path)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # every 50 ms
    cfg = load_config(write_config(tmp_path, emp_url=emp.url), {})

    async def datagram() -> str:
        async with asyncio.timeout(10):
            return (await loop.sock_recv(sock, 4096)).decode()

    def pending() -> list[str]:
        got = []
        for _ in range(1000):
            try:
                got.append(sock.recv(4096).decode())
            except BlockingIOError:
                return got
        raise AssertionError("the notify socket never ran dry")

    try:
        async with running_gateway(Gateway(cfg, notifier=notifier), emp) as h:
            gateway = h.gateway
            assert (await datagram()).startswith("READY=1")
            assert await datagram() == "WATCHDOG=1"
            assert gateway.oioi is not None
            await gateway.oioi.stop_accepting()  # listeners down: the health check fails
            assert not (await gateway.health())[0]
            await _until(lambda: gateway.watchdog_withheld >= 1, "a withheld ping")
            pending()  # what was sent before the check first failed
            pings = gateway.watchdog_pings
            withheld = gateway.watchdog_withheld
            await _until(lambda: gateway.watchdog_withheld >= withheld + 4, "withheld pings")
            assert pending() == []
            assert gateway.watchdog_pings == pings
            assert gateway.died is None  # unhealthy, not dead: systemd's watchdog decides
    finally:
        sock.close()


async def test_a_job_failing_run_after_run_fails_the_health_check(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    cfg = load_config(write_config(tmp_path, emp_url=emp.url), {})
    async with running_gateway(Gateway(cfg), emp) as h:
        jobs = h.gateway.jobs
        assert jobs is not None
        assert (await h.gateway.health())[0]
        runs = 0
        release = asyncio.Event()

        async def broken() -> None:
            nonlocal runs
            runs += 1
            if runs <= 3:
                raise RuntimeError("a job that cannot run")
            await release.wait()  # the fourth run succeeds when the test says so

        jobs.every("broken-job", 0.05, broken)
        await _until(lambda: jobs.failures.get("broken-job", 0) >= 3, "three failed runs")
        healthy, detail = await h.gateway.health()
        assert not healthy and detail["jobs"] == "failing: broken-job"
        # Its schedule restarts it: one good run and the gateway is healthy again.
        release.set()
        await _until(lambda: jobs.runs.get("broken-job", 0) >= 1, "a good run")
        assert (await h.gateway.health())[0]
