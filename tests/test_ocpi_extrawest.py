"""An OCPI 2.2.1 eMSP the project did not write: extrawest-ocpi (FastAPI), run as its own
process on loopback (tests/peers/extrawest_emsp.py, in tests/peers/.venv-ocpi made by
scripts/setup). We register with it using its token A; it reads our versions and endpoints
with the token B we send, answers its token C, and we read its endpoints with C."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.bridge.links import LinkState
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.registration import Identity, PartnerSettings, Registrar
from cpo_gateway.ocpi.server import OcpiServer
from cpo_gateway.ocpi.transport import Party
from cpo_gateway.store import Database, Store

PEERS = Path(__file__).resolve().parent / "peers"
PYTHON = PEERS / ".venv-ocpi" / "bin" / "python"
TOKEN_A = "extrawest-token-a-0001"

pytestmark = pytest.mark.skipif(
    not (PEERS / ".venv-ocpi" / ".installed").exists(),
    reason="the extrawest-ocpi peer is not installed (scripts/setup installs it)",
)


class Peer:
    def __init__(self, process: asyncio.subprocess.Process, versions_url: str) -> None:
        self.process = process
        self.versions_url = versions_url

    async def event(self, name: str) -> dict[str, Any]:
        """The next line the peer printed with this event (bounded: 50 lines, 10 s each)."""
        assert self.process.stdout is not None
        for _ in range(50):
            line = await asyncio.wait_for(self.process.stdout.readline(), 10)
            if not line:
                break
            found: dict[str, Any] = json.loads(line)
            if found.get("event") == name:
                return found
        raise AssertionError(f"the peer printed no {name!r} event")


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    process = await asyncio.create_subprocess_exec(
        str(PYTHON),
        str(PEERS / "extrawest_emsp.py"),
        TOKEN_A,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    first = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
    try:
        yield Peer(process, first["versions_url"])
    finally:
        process.terminate()
        await process.wait()


async def test_we_register_with_an_emsp_we_did_not_write(tmp_path: Path, peer: Peer) -> None:
    db = Database(tmp_path / "gateway.db")
    await db.open()
    store = Store(db)
    ours = Party("DE", "CPO")
    client = OcpiClient(ours)
    holder: list[OcpiServer] = []
    registrar = Registrar(
        store,
        client,
        Identity(ours, "Test CPO", lambda: holder[0].base_url),
        [PartnerSettings("xw", peer.versions_url, TOKEN_A, 10.0)],
    )
    server = OcpiServer(registrar, host="127.0.0.1", port=0, base_url="", ours=ours)
    holder.append(server)
    await server.start()
    try:
        link = await registrar.register("xw")
        seen = await peer.event("registered")
        assert link.state is LinkState.REGISTERED
        # it used our API with the token B we sent: it read our 2.2.1 endpoints
        assert seen["cpo"]["token"] == link.token_in
        assert seen["cpo"]["roles"][0]["party_id"].upper() == "CPO"  # it stores CiStrings lower
        ids = {e["identifier"] for e in seen["endpoints"]["endpoints"]}
        assert "credentials" in ids
        # and we read its endpoints with its token C
        endpoints = dict(link.details["endpoints"])
        assert endpoints["locations/RECEIVER"].endswith("/ocpi/emsp/2.2.1/locations/")
        assert link.details["roles"][0]["party_id"] == "XWE"
        assert server.counts.get("versions", 1000) >= 2  # versions and details, token B
        # its token A is spent: a second POST would be refused, an update (PUT) is not
        again = await registrar.register("xw")
        await peer.event("updated")
        assert again.token_out != link.token_out and again.state is LinkState.REGISTERED
    finally:
        await server.close()
        await client.close()
        await db.close()
