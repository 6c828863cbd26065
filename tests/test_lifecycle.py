"""The daemon in a real subprocess: READY=1 on a real notify socket, SIGTERM, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_config


def _spawn(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cpo_gateway", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    return sock, path


def _events(output: str) -> list[dict[str, object]]:
    events = []
    for line in output.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_ready_then_sigterm_exits_zero_within_grace(tmp_path: Path) -> None:
    sock, path = _notify_socket(tmp_path)
    proc = _spawn(write_config(tmp_path), {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    try:
        messages: list[str] = []
        while not any(m.startswith("READY=1") for m in messages):
            messages.append(sock.recv(4096).decode())
        ready = next(m for m in messages if m.startswith("READY=1"))
        assert "ocpp :" in ready and "oioi :" in ready
        # The watchdog pings at half of WATCHDOG_USEC.
        assert sock.recv(4096).decode() == "WATCHDOG=1"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert proc.returncode == 0, out
    assert took < 5.0 + 5  # shutdown_grace_s in the test config, plus interpreter exit
    names = [e["event"] for e in _events(out)]
    assert (
        names.index("gateway.ready")
        < names.index("gateway.stopping")
        < names.index("gateway.stopped")
    )


def test_port_in_use_exits_71_with_one_clear_line(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    config = write_config(tmp_path, ocpp="")
    config.write_text(config.read_text().replace("port = 0", f"port = {port}", 1))
    try:
        proc = _spawn(config)
        out, _ = proc.communicate(timeout=60)
    finally:
        blocker.close()
    assert proc.returncode == 71, out
    failed = [e for e in _events(out) if e["event"] == "gateway.start_failed"]
    assert len(failed) == 1 and "cannot listen" in str(failed[0]["error"])


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root can write anywhere; uses a file as state dir instead"
)
def test_unwritable_state_dir_exits_73(tmp_path: Path) -> None:  # pragma: no cover - non-root
    state = tmp_path / "ro"
    state.mkdir(mode=0o500)
    config = write_config(tmp_path, gateway="")
    config.write_text(config.read_text().replace(str(tmp_path / "state"), str(state)))
    proc = _spawn(config)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 73, out


def test_state_dir_that_is_a_file_exits_73(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    proc = _spawn(write_config(tmp_path))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 73, out
    assert "is not writable" in out


def test_bad_config_exits_78(tmp_path: Path) -> None:
    config = write_config(tmp_path, ocpp="bogus = 1")
    proc = _spawn(config)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 78
    assert "ocpp.bogus: unknown key" in out


def test_a_postgresql_that_does_not_answer_exits_75_so_systemd_tries_again(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://gw:secret-pw@127.0.0.1:{port}/cpo"
    config = write_config(tmp_path)
    env = {**os.environ, "CPO_GATEWAY_STORAGE_URL": url}
    text = config.read_text(encoding="utf-8")
    if "[storage]" in text:  # the run is on PostgreSQL: point that table elsewhere
        text = text[: text.index("[storage]")]
    config.write_text(text + "\n[storage]\nconnect_timeout_s = 1.0\n", encoding="utf-8")
    proc = _spawn(config, env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 75, out
    assert "database not reachable" in out and f"127.0.0.1:{port}" in out
    assert "secret-pw" not in out  # the URL is logged without its password
