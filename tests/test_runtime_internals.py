"""The CPython internals the runtime tuning (cpo_gateway/runtime.py, the OCPP accept batch)
relies on, checked on this Python: when one of these fails after an upgrade, run with
CPO_GATEWAY_RUNTIME_TUNING=0 until runtime.py is adapted, and do not raise requires-python."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import gc
import inspect
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
from asyncio import selector_events
from pathlib import Path

import pytest

from cpo_gateway import runtime
from tests.conftest import write_config

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the tuning targets epoll")


@linux_only
def test_the_epoll_selector_keeps_its_epoll_object_in_a_private_attribute() -> None:
    selector = selectors.EpollSelector()
    try:
        assert type(selector._selector) is select.epoll  # type: ignore[attr-defined]
        # poll(timeout, maxevents): the cap is passed as the second argument.
        assert selector._selector.poll(0, 1) == []  # type: ignore[attr-defined]
    finally:
        selector.close()


@linux_only
def test_the_event_loop_polls_through_the_selector_it_was_given() -> None:
    loop = runtime.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        selector = loop._selector  # type: ignore[attr-defined]
        assert isinstance(selector, runtime._CappedEpollSelector)
        assert isinstance(selector._selector, runtime._CappedPoll)
    finally:
        loop.close()


def test_asyncio_accepts_up_to_backlog_connections_per_wake_up() -> None:
    accept = selector_events.BaseSelectorEventLoop._accept_connection  # type: ignore[attr-defined]
    assert "backlog" in inspect.signature(accept).parameters
    assert "range(backlog)" in inspect.getsource(accept)


def test_gc_offers_freezing_and_three_generation_thresholds() -> None:
    threshold = gc.get_threshold()
    assert len(threshold) == 3 and all(type(t) is int for t in threshold)
    assert callable(gc.freeze) and callable(gc.unfreeze)
    assert type(gc.get_freeze_count()) is int
    assert type(sys.getallocatedblocks()) is int
    try:
        gc.set_threshold(threshold[0], threshold[1], runtime._NEVER)
        assert gc.get_threshold() == (threshold[0], threshold[1], runtime._NEVER)
    finally:
        gc.set_threshold(*threshold)


def test_one_switch_turns_the_tuning_off() -> None:
    assert runtime.tuning_enabled({}) is True
    assert runtime.tuning_enabled({runtime.TUNING_ENV: "1"}) is True
    for off in ("0", "false", "OFF", " no "):
        assert runtime.tuning_enabled({runtime.TUNING_ENV: off}) is False


def test_untuned_run_uses_asyncios_own_loop() -> None:
    async def loop_type() -> type:
        return type(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]

    assert runtime.run(loop_type(), tuned=False) is not runtime._CappedEpollSelector
    if sys.platform == "linux":
        assert runtime.run(loop_type(), tuned=True) is runtime._CappedEpollSelector


def test_the_daemon_runs_untuned_when_switched_off(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), runtime.TUNING_ENV: "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cpo_gateway", "run", "-c", str(write_config(tmp_path))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        while not sock.recv(4096).decode().startswith("READY=1"):
            pass
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sock.close()
    assert proc.returncode == 0, out
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "runtime.tuning_off" in events and "gateway.ready" in events
    assert "gc.paced" not in events  # no collector installed


def test_asyncio_sizes_each_tls_connections_read_buffer_by_max_size() -> None:
    protocol = asyncio.sslproto.SSLProtocol
    # Each TLS connection's read buffer is allocated from the class attribute ...
    assert "bytearray(self.max_size)" in inspect.getsource(protocol.__init__)
    saved = protocol.max_size
    try:
        protocol.max_size = 256 * 1024
        runtime.new_event_loop().close()
        # ... which the gateway's loop lowers to two TLS records.
        assert protocol.max_size == 32 * 1024
    finally:
        protocol.max_size = saved
