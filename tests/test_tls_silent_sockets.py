"""The OCPP TLS port under silent sockets: connections that never send a ClientHello (a
port scanner, a stuck load balancer) are closed once the handshake timeout
(`[ocpp] open_timeout_s`) has passed, without a byte sent to them and without counting as
refusals, and a profile-2 charger connects and boots beside them. The long version, 2,000
sockets beside 100 chargers, is `scripts/bench --scenario tls-flood`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import SimPki
from tests.test_csms_profile3 import ORG, P2, PASSWORD, stations, tls_keys, wss
from tests.test_csms_support import config, running, with_ocpp

SILENT = 200
HANDSHAKE_TIMEOUT_S = 2.0
WAIT_S = 60.0  # bound on waiting for the gateway to close them; generous for a busy machine


@pytest.fixture
def pki(tmp_path: Path) -> SimPki:
    return SimPki(tmp_path / "pki", ORG)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything the gateway sends until it closes the socket (a reset counts as closed)."""
    received = b""
    try:
        while chunk := await reader.read(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def test_silent_sockets_are_closed_after_the_handshake_timeout_and_chargers_connect(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    cfg = config(
        tmp_path,
        emp,
        stations=stations(tmp_path),
        extra=tls_keys(pki),
        change=with_ocpp(open_timeout_s=HANDSHAKE_TIMEOUT_S),
    )
    async with running(cfg, emp) as h:
        silent = [await asyncio.open_connection("127.0.0.1", h.csms.port) for _ in range(SILENT)]
        try:
            waits = [asyncio.create_task(read_to_end(reader)) for reader, _ in silent]
            url = f"{wss(h.ocpp_url)}/{P2}"
            async with SimCharger(
                P2, url[: -len(P2) - 1], password=PASSWORD, ssl=pki.client_context()
            ) as cp:
                await cp.connect()
                assert cp.boot_status == "Accepted"
                assert P2 in h.csms.connections
            async with asyncio.timeout(WAIT_S):
                received = await asyncio.gather(*waits)
        finally:
            for _, writer in silent:
                writer.transport.abort()
        gate = h.csms.tls
        assert gate is not None
        assert received == [b""] * SILENT  # closed, and nothing was sent before
        assert gate.handshakes_abandoned == SILENT
        assert gate.handshakes_failed == 0  # a stalled peer is not a refusal
