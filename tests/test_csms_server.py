"""The OCPP server's connections: frame limits, compression, keepalive, reconnects replacing
old sockets, malformed frames, and presence (closed or silent chargers go offline)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import select
import socket
import time
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from cpo_gateway.csms import server as csms_server
from cpo_gateway.csms.connected import ChargerRegistry
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import Harness
from tests.test_csms_support import (
    CP,
    OCPP16,
    TS,
    RawCharger,
    config,
    eventually,
    running,
    with_ocpp,
)


def registry(h: Harness) -> ChargerRegistry:
    assert h.gateway.csms is not None
    return h.gateway.csms.registry


def online(h: Harness, cp_id: str) -> bool:
    assert h.gateway.core is not None
    return h.gateway.core.status.is_online(cp_id)


# --- limits --------------------------------------------------------------------------------
async def test_frame_over_the_limit_closes_with_1009(tmp_path: Path, emp: SandboxEmp) -> None:
    async with running(config(tmp_path, emp, ocpp="max_frame_bytes = 2048"), emp) as h:
        async with connect(f"{h.ocpp_url}/{CP}", subprotocols=[OCPP16]) as ws:
            await eventually(lambda: registry(h).is_connected(CP))
            big = orjson.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "y" * 4096}])
            await ws.send(big.decode())
            async with asyncio.timeout(10):
                await ws.wait_closed()
            assert ws.close_code == 1009
        await eventually(lambda: not registry(h).is_connected(CP))


async def test_compression_is_off(tmp_path: Path, emp: SandboxEmp) -> None:
    async with (
        running(config(tmp_path, emp), emp) as h,
        connect(f"{h.ocpp_url}/{CP}", subprotocols=[OCPP16], compression="deflate") as ws,
    ):
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


async def test_a_peer_that_does_not_answer_pings_is_dropped(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    cfg = config(tmp_path, emp, change=with_ocpp(ping_interval_s=0.2, ping_timeout_s=0.2))
    async with running(cfg, emp) as h:
        assert h.gateway.csms is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", h.gateway.csms.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {cfg.ocpp.path}/{CP} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n".encode()
        )
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            opcodes = set()
            # Skip through the server's frames (unmasked), noting their opcodes, until the
            # server gives up on us: the TCP stream ends.
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionResetError):
                while head := await reader.read(2):
                    if len(head) == 1:
                        head += await reader.readexactly(1)
                    opcodes.add(head[0] & 0x0F)
                    size = head[1] & 0x7F
                    if size >= 126:
                        extended = await reader.readexactly(2 if size == 126 else 8)
                        size = int.from_bytes(extended, "big")
                    await reader.readexactly(size)
        writer.close()
        assert 0x9 in opcodes  # it pinged, and closed when no pong came
        await eventually(lambda: not registry(h).is_connected(CP))


# --- reconnects ----------------------------------------------------------------------------
async def test_reconnect_replaces_the_old_connection(tmp_path: Path, emp: SandboxEmp) -> None:
    cfg = config(tmp_path, emp, change=with_ocpp(offline_grace_s=0.0))
    async with running(cfg, emp) as h, h.charger(CP) as first, h.charger(CP) as second:
        await first.connect()
        old = registry(h).connections[CP]
        await second.connect()
        await eventually(lambda: not first.connected)
        assert old.ws.close_code == 1000
        await second.heartbeat()
        tx = await second.start_transaction(1, "04A2B3C4", meter_start=10)
        assert tx > 0
        assert list(registry(h).connections) == [CP]
        assert registry(h).connections[CP] is not old
        # The old connection's cleanup did not tell the core the charger went away.
        assert online(h, CP)
        result = await registry(h).trigger_status(CP, 1)
        assert result.accepted


def _connect_all(port: int, n: int, wait_s: float) -> int:
    """Open n TCP connections without yielding to the event loop (so the gateway accepts
    none of them) and count those the kernel completed within wait_s."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
        poller = select.poll()
        for s in socks:
            poller.register(s, select.POLLOUT)
        done: set[int] = set()
        deadline = time.monotonic() + wait_s
        while len(done) < n and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                done.add(fd)
        return sum(
            1
            for s in socks
            if s.fileno() in done and not s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        )
    finally:
        for s in socks:
            s.close()


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 0


STORM_CONNECTS = csms_server.ACCEPT_BATCH * 20 + 100


@pytest.mark.skipif(
    _somaxconn() < STORM_CONNECTS, reason="the kernel caps listen queues below the storm"
)
async def test_a_connect_storm_waits_in_the_listen_queue(harness: Harness) -> None:
    """The gateway accepts a few connections per loop iteration; the rest must wait in the
    kernel's queue, not be dropped (a dropped SYN costs the charger a second or more).
    The connects are made without yielding, so the gateway accepts none meanwhile."""
    assert harness.gateway.csms is not None
    n = STORM_CONNECTS
    assert _connect_all(harness.gateway.csms.port, n, wait_s=3.0) == n
    async with harness.charger(CP) as charger:
        await charger.connect()
        await charger.heartbeat()


# --- malformed frames ----------------------------------------------------------------------
async def test_malformed_frames_get_call_errors_and_the_connection_stays(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with running(config(tmp_path, emp), emp) as h, RawCharger.open(h.ocpp_url) as raw:
        await raw.send("this is not json")
        await raw.send(orjson.dumps({"an": "object"}))
        await raw.send('[3, "nobody-asked", {}]')  # a CallResult for an unknown id: ignored
        await raw.send('[4, "nobody-asked-either", "GenericError", "", {}]')
        cases = [
            ('[2, "f1", "Heartbeat"]', "ProtocolError", "needs 4 elements"),
            ('[2, "f2", "Heartbeat", [], 5]', "FormationViolation", "needs 4 elements"),
            ('[2, "f3", "Heartbeat", []]', "FormationViolation", "payload is not an object"),
            ('[2, "f4", 17, {}]', "FormationViolation", "action is not a string"),
            ('[9, "f5", "Heartbeat", {}]', "ProtocolError", "not 2, 3 or 4"),
            ('[2, "f6", "FooBar", {}]', "NotImplemented", "FooBar"),
            ('[2, "f7", "RemoteStartTransaction", {"idTag": "X"}]', "NotSupported", "Remote"),
            (
                orjson.dumps(
                    [
                        2,
                        "f8",
                        "StartTransaction",
                        {"connectorId": 1, "idTag": "X", "meterStart": "zero", "timestamp": TS},
                    ]
                ).decode(),  # fmt: skip
                "TypeConstraintViolation",
                "StartTransaction.meterStart: expected integer, got 'zero'",
            ),
            (
                '[2, "f9", "StopTransaction", {"meterStop": 5, "timestamp": "' + TS + '"}]',
                "OccurenceConstraintViolation",
                "StopTransaction.transactionId: required field is missing",
            ),
            (
                '[2, "f10", "StatusNotification", '
                '{"connectorId": 1, "errorCode": "NoError", "status": "Available", '
                '"timestamp": "yesterday"}]',
                "PropertyConstraintViolation",
                "StatusNotification.timestamp",
            ),
        ]
        for frame, code, words in cases:
            await raw.send(frame)
            unique_id = orjson.loads(frame)[1]
            reply = await raw.reply(unique_id)
            assert reply[0] == 4 and reply[2] == code, reply
            assert words in reply[3], reply
            if code.endswith("ConstraintViolation"):
                assert reply[4]["field"] in reply[3]  # details name the field too
        ok = await raw.call("Heartbeat", {})
        assert ok[0] == 3 and "currentTime" in ok[2]
        assert registry(h).is_connected(CP)
        assert "nobody-asked" not in raw._replies  # nothing answered the stray CallResult


# --- presence ------------------------------------------------------------------------------
async def test_closed_socket_makes_the_charger_offline(tmp_path: Path, emp: SandboxEmp) -> None:
    cfg = config(tmp_path, emp, change=with_ocpp(offline_grace_s=0.0))
    async with running(cfg, emp) as h:
        await emp.wait_for(lambda: len(emp.stations) == 3, timeout=10)
        async with h.charger(CP) as cp:
            await cp.connect()
            await cp.status(1, "Available")
            await emp.wait_for(lambda: emp.statuses.get("DE*CPO*E1001*1") == "Available", 10)
            assert online(h, CP)
        await eventually(lambda: not registry(h).is_connected(CP))
        assert not online(h, CP)
        await emp.wait_for(lambda: emp.statuses.get("DE*CPO*E1001*1") == "Offline", timeout=10)


async def test_silent_charger_is_closed_and_offline(tmp_path: Path, emp: SandboxEmp) -> None:
    change = with_ocpp(heartbeat_interval_s=1, offline_grace_s=0.0)
    async with (
        running(config(tmp_path, emp, change=change), emp) as h,
        RawCharger.open(h.ocpp_url, CP) as silent,
        RawCharger.open(h.ocpp_url, "CP-HH-001") as chatty,
    ):
        boot = await silent.call(
            "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
        )
        assert boot[2]["interval"] == 1
        async with asyncio.timeout(15):
            while silent.ws.close_code is None:
                assert (await chatty.call("Heartbeat", {}))[0] == 3
                await asyncio.sleep(0.3)
        assert silent.ws.close_code == 1001
        await eventually(lambda: not registry(h).is_connected(CP))
        assert not online(h, CP)
        # The charger that kept talking is still there.
        for _ in range(3):
            assert (await chatty.call("Heartbeat", {}))[0] == 3
        assert registry(h).is_connected("CP-HH-001") and online(h, "CP-HH-001")
