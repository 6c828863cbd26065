"""Peers that stall on the TLS port are closed, each within open_timeout_s: a silent TCP
connection (the TLS gate's handshake timeout), one that sends half a ClientHello and waits
(a TLS slowloris), and one that completes TLS and never sends its HTTP upgrade (websockets'
open timeout). Meanwhile and afterwards a charger connects and boots."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import SimPki
from tests.test_csms_profile3 import P2, PASSWORD, pki, stations, tls_keys, wss
from tests.test_csms_support import config, eventually, running

__all__ = ["pki"]  # the fixture, imported for pytest

SILENT = 20
HALF_HELLO = 5
NO_UPGRADE = 3
# A TLS handshake record header announcing 512 bytes, and the first few of them.
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the gateway ended the connection (bounded: a hang fails the test)."""
    try:
        data = await asyncio.wait_for(reader.read(), 30)  # asyncio would wait 60 s
    except (ConnectionResetError, BrokenPipeError):
        return True
    return data == b""


async def test_stalled_tls_peers_are_closed_and_chargers_still_connect(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    cfg = config(
        tmp_path,
        emp,
        stations=stations(tmp_path),
        ocpp="open_timeout_s = 0.5",
        extra=tls_keys(pki),
    )
    async with running(cfg, emp) as h:
        port = h.csms.port
        gate = h.csms.tls
        assert gate is not None
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(SILENT)]
        half = [await asyncio.open_connection("127.0.0.1", port) for _ in range(HALF_HELLO)]
        for _, writer in half:
            writer.write(PARTIAL_CLIENT_HELLO)
            await writer.drain()
        quiet = [
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=pki.client_context(), server_hostname="127.0.0.1"
            )
            for _ in range(NO_UPGRADE)
        ]
        url = wss(h.ocpp_url)
        async with SimCharger(P2, url, password=PASSWORD, ssl=pki.client_context()) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"
        peers = silent + half + quiet
        closed = await asyncio.gather(*(_closed_by_server(r) for r, _ in peers))
        assert all(closed), closed
        for _, writer in peers:
            writer.close()
        # The TLS-level stalls are counted as abandoned, not as refusals.
        await eventually(lambda: gate.handshakes_abandoned == SILENT + HALF_HELLO)
        assert gate.handshakes_failed == 0
        async with SimCharger(P2, url, password=PASSWORD, ssl=pki.client_context()) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"
