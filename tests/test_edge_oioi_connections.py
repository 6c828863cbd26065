"""Every listener times out idle and slow clients, and no source can take all connections.

Real sockets on loopback against a running gateway: idle sockets and slowloris clients on the
OIOI port are closed by the server; a keep-alive connection that keeps asking is not; a body
that never arrives gets 408; above a per-source or total cap the connection idle longest
makes room and, when every one is busy, the new one is refused; and while the OIOI port is
flooded up to its cap the EMP's session-start is answered and a charger still connects.
Different sources are different loopback addresses (all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import structlog

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.connlimit import descriptor_budget
from cpo_gateway.httpguard import GuardedListener
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import INBOUND_KEY, Harness, running_gateway, write_config

EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
BOUND_S = 30.0  # how long a test waits at most for the server to close a socket


@contextlib.asynccontextmanager
async def edge_gateway(
    tmp_path: Path, emp: SandboxEmp, oioi: str, ocpp: str = ""
) -> AsyncIterator[Harness]:
    cfg = load_config(write_config(tmp_path, emp_url=emp.url, oioi=oioi, ocpp=ocpp), {})
    async with running_gateway(Gateway(cfg), emp) as h:
        yield h


def listener(h: Harness) -> GuardedListener:
    assert h.gateway.oioi is not None
    return h.gateway.oioi.listener


async def connect(port: int, source: str) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closes the socket (EOF or reset) without answering anything."""
    try:
        async with asyncio.timeout(BOUND_S):
            return await reader.read(65536) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def gone(reader: asyncio.StreamReader) -> bool:
    """The server has closed this socket already (no waiting)."""
    return reader.at_eof() or reader.exception() is not None


async def slowloris(port: int, source: str) -> bool:
    """Send a request's headers a byte every 50 ms, never finishing; True when the server
    closes the connection (bounded: 600 bytes)."""
    reader, writer = await connect(port, source)
    try:
        writer.write(b"POST /api/v4/request HTTP/1.1\r\nHost: cpo\r\nX-Slow: ")
        for _ in range(600):
            try:
                writer.write(b"a")
                await writer.drain()
                async with asyncio.timeout(0.05):
                    data = await reader.read(1024)
            except TimeoutError:
                continue
            except ConnectionError:
                return True
            return data == b""  # an answer instead of a close is not what the rule says
        return False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def http_exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request on an open connection; the status and body of its answer."""
    writer.write(request)
    async with asyncio.timeout(BOUND_S):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:")
        )
        body = await reader.readexactly(length)
    return int(lines[0].split(" ", 2)[1]), body


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: cpo\r\n\r\n"


def partial_post(length: int, sent: bytes) -> bytes:
    return (
        b"POST /api/v4/request HTTP/1.1\r\nHost: cpo\r\nContent-Type: application/json\r\n"
        + f"Authorization: key={INBOUND_KEY}\r\nContent-Length: {length}\r\n\r\n".encode()
        + sent
    )


async def test_idle_and_slowloris_connections_are_closed_by_the_server(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    oioi = "header_timeout_s = 0.5\nkeepalive_timeout_s = 0.5\nmax_connections_per_source = 60\nmax_connections = 400"
    async with edge_gateway(tmp_path, emp, oioi) as h:
        assert h.gateway.oioi is not None
        port = h.gateway.oioi.port
        idle = [await connect(port, f"127.0.0.{2 + i % 4}") for i in range(200)]
        try:
            slow = asyncio.gather(*(slowloris(port, "127.0.0.6") for _ in range(50)))
            closed = await asyncio.gather(*(closed_by_server(r) for r, _ in idle))
            slow_closed = await slow
        finally:
            await close_all(idle)
        assert closed.count(True) == 200
        assert slow_closed.count(True) == 50
        await h.emp.wait_for(lambda: listener(h).open == 0, timeout=BOUND_S)
        assert listener(h).timed_out["headers"] == 250


async def test_keep_alive_serves_request_after_request_then_closes_when_idle(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    oioi = "header_timeout_s = 0.5\nkeepalive_timeout_s = 2.0"
    async with edge_gateway(tmp_path, emp, oioi) as h:
        assert h.gateway.oioi is not None
        reader, writer = await connect(h.gateway.oioi.port, "127.0.0.2")
        try:
            statuses = []
            for _ in range(12):  # longer in all than the header timeout: each request restarts it
                statuses.append((await http_exchange(reader, writer, HEALTHZ))[0])
                await asyncio.sleep(0.1)
            assert statuses == [200] * 12
            assert await closed_by_server(reader)
        finally:
            await close_all([(reader, writer)])
        assert listener(h).timed_out["idle"] == 1


async def test_a_body_that_does_not_arrive_gets_408_and_the_connection_closes(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with edge_gateway(tmp_path, emp, "body_timeout_s = 0.5") as h:
        assert h.gateway.oioi is not None
        conn = await connect(h.gateway.oioi.port, "127.0.0.2")
        try:
            status, body = await http_exchange(*conn, partial_post(100, b'{"rfid-post": '))
            assert (status, orjson.loads(body)["result"]["code"]) == (408, 230)
            assert await closed_by_server(conn[0])
        finally:
            await close_all([conn])
        assert listener(h).timed_out["body"] == 1


async def test_per_source_cap_recycles_idle_connections_and_refuses_when_all_are_busy(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    oioi = "header_timeout_s = 30.0\nbody_timeout_s = 30.0\nmax_connections_per_source = 20\nmax_connections = 100"
    async with edge_gateway(tmp_path, emp, oioi) as h:
        assert h.gateway.oioi is not None
        port, limiter = h.gateway.oioi.port, listener(h).limiter
        idle = [await connect(port, "127.0.0.7") for _ in range(30)]
        busy = [await connect(port, "127.0.0.8") for _ in range(20)]
        refused: list[Conn] = []
        try:
            # The oldest idle ones made room for the newer ten; the twenty kept are served.
            assert [await closed_by_server(r) for r, _ in idle[:10]] == [True] * 10
            assert [(await http_exchange(r, w, HEALTHZ))[0] for r, w in idle[10:]] == [200] * 20
            # Twenty connections each in the middle of a request body: none is idle.
            for _, writer in busy:
                writer.write(partial_post(1000, b"{"))
            await h.emp.wait_for(
                lambda: (
                    limiter.open_from("127.0.0.8") == 20 and limiter.idle_from("127.0.0.8") == 0
                ),
                timeout=BOUND_S,
            )
            with structlog.testing.capture_logs() as events:
                refused = [await connect(port, "127.0.0.8") for _ in range(3)]
                assert [await closed_by_server(r) for r, _ in refused] == [True] * 3
            assert not any(gone(r) for r, _ in busy)
            assert limiter.open_from("127.0.0.8") == 20
            # Another source is not affected, and the refusals are counted and logged once.
            async with h.client() as client:
                status, _ = await client.session_stop(EVSE, EVCO, "no-such-session")
            assert status == 200
            conn = await connect(port, "127.0.0.9")
            try:
                _, text = await http_exchange(*conn, b"GET /metrics HTTP/1.1\r\nHost: cpo\r\n\r\n")
            finally:
                await close_all([conn])
        finally:
            await close_all(idle + busy + refused)
        metrics = text.decode()
        assert (
            'cpo_gateway_oioi_connections_limited_total{limit="per_source",outcome="refused"} 3.0'
            in metrics
        )
        assert (
            'cpo_gateway_oioi_connections_limited_total{limit="per_source",outcome="recycled_idle"} 10.0'
            in metrics
        )
        logged = [e for e in events if e["event"] == "security.connection_limit"]
        assert [(e["source"], e["limit"], e["outcome"]) for e in logged] == [
            ("127.0.0.8", "per_source", "refused")
        ]


async def test_a_flood_up_to_the_cap_leaves_the_emp_and_chargers_served(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    oioi = "header_timeout_s = 30.0\nmax_connections_per_source = 50\nmax_connections = 200"
    async with edge_gateway(tmp_path, emp, oioi) as h:
        assert h.gateway.oioi is not None
        port = h.gateway.oioi.port
        await h.emp.wait_for(lambda: len(h.emp.stations) == 3, timeout=10)
        flood = [await connect(port, f"127.0.0.{10 + i % 5}") for i in range(250)]
        try:
            await h.emp.wait_for(lambda: listener(h).open == 200, timeout=BOUND_S)
            async with h.charger("CP-BER-001") as cp:
                await cp.connect()
                await cp.status(1, "Available")
                await cp.status(2, "Available")
                async with h.client() as client:
                    status, body = await client.session_start(EVSE, EVCO)
            assert status == 200 and body["result"]["code"] == 0, body
            assert body["session-start"]["session-id"]
            assert listener(h).open <= 200
            # The flood was held at the cap: its oldest idle sockets were closed for newer ones.
            assert sum(gone(r) for r, _ in flood) >= 50
        finally:
            await close_all(flood)


async def test_ocpp_handshakes_that_never_complete_are_closed_while_chargers_connect(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with edge_gateway(tmp_path, emp, "", ocpp="open_timeout_s = 0.5") as h:
        assert h.gateway.csms is not None
        port = h.gateway.csms.port
        slow = asyncio.gather(*(slowloris(port, "127.0.0.30") for _ in range(50)))
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            assert h.gateway.csms.connections.keys() == {"CP-BER-001"}
        assert (await slow).count(True) == 50


def test_the_total_cap_keeps_a_margin_of_the_open_files_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no open-files limit")
    assert descriptor_budget(10**9) == soft // 4
    assert descriptor_budget(10) == min(10, soft // 4)


def test_timeouts_and_caps_are_config_keys_checked_by_name(tmp_path: Path) -> None:
    from cpo_gateway.config import ConfigError

    ok = load_config(write_config(tmp_path, oioi="header_timeout_s = 2.5\nmax_connections = 50",
                                  ocpp="open_timeout_s = 3.0"), {})  # fmt: skip
    assert (ok.oioi.header_timeout_s, ok.oioi.max_connections, ok.ocpp.open_timeout_s) == (
        2.5,
        50,
        3.0,
    )
    assert ok.oioi.keepalive_timeout_s == 75.0 and ok.oioi.max_connections_per_source == 100
    bad = "body_timeout_s = 0\nkeepalive_timeout_s = 'long'\nmax_connections_per_source = 11\nmax_connections = 10"
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, oioi=bad), {})
    text = "\n".join(info.value.problems)
    assert "oioi.body_timeout_s: expected a number" in text
    assert "oioi.keepalive_timeout_s: expected a number" in text
    assert "oioi.max_connections_per_source: expected at most oioi.max_connections (10)" in text


def test_at_a_cap_never_served_idle_connections_make_room_before_served_ones() -> None:
    from cpo_gateway.connlimit import ConnectionLimiter

    limiter: ConnectionLimiter[str] = ConnectionLimiter("test", per_source=3, total=4)
    for conn in ("emp-1", "stranger-1", "stranger-2"):
        assert limiter.admit(conn, "10.0.0.1").admitted
    limiter.busy("emp-1")
    limiter.idle("emp-1", served=True)  # the EMP's keep-alive connection, idle again
    # Per source: the stranger's oldest never-served socket goes, not the EMP's older one.
    assert limiter.admit("stranger-3", "10.0.0.1").recycle == "stranger-1"
    assert limiter.admit("other-1", "10.0.0.2").recycle is None
    # In total: again a never-served one first, from any source.
    assert limiter.admit("other-2", "10.0.0.2").recycle == "stranger-2"
    for conn in ("stranger-3", "other-1", "other-2"):
        limiter.busy(conn)
    assert limiter.admit("other-3", "10.0.0.3").recycle == "emp-1"  # the only idle one left
    limiter.busy("other-3")
    assert not limiter.admit("other-4", "10.0.0.3").admitted  # every one busy: refused
    assert limiter.open == 4
    assert limiter.limited == {
        ("per_source", "recycled_idle"): 1,
        ("total", "recycled_idle"): 2,
        ("total", "refused"): 1,
    }
