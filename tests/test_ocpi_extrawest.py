"""An OCPI 2.2.1 eMSP the project did not write: extrawest-ocpi (FastAPI), run as its own
process on loopback (tests/peers/extrawest_emsp.py, in tests/peers/.venv-ocpi made by
scripts/setup). We register with it using its token A; it reads our versions and endpoints
with the token B we send, answers its token C, and we read its endpoints with C."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.config import load_config
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.link import pull_source
from cpo_gateway.ocpi.registration import Identity, PartnerSettings, Registrar
from cpo_gateway.ocpi.server import OcpiServer
from cpo_gateway.ocpi.token_pull import PullFailed, TokenPuller
from cpo_gateway.ocpi.transport import Party
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.store import Store
from tests.conftest import OUTBOUND_KEY, Harness, running_gateway, write_config
from tests.storage import make_database

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
    db = make_database(tmp_path / "gateway.db")
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


# --- The whole story on a running gateway: the eMSP registers, receives our Locations and
# EVSE statuses, its tokens reach our chargers (pulled and pushed), it starts and stops a
# session and receives the CDR, while an OIOI EMP does the same on the next EVSE.

LOCATION, OCPI_EVSE, OIOI_EVSE = "DE-BER-ALEX-01", "DE*CPO*E1001*1", "DE*CPO*E1001*2"
PULLED, PUSHED, EVCO = "04A2B3C4", "0A0B0C0D", "DE-8PS-C12345-6"
ASK_FIRST, KEPT_OFFLINE = "1A2B3C4D", "2A2B3C4D"  # its tokens that need a real-time ask


def xw_token(uid: str, **over: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "XWE",
        "uid": uid,
        "type": "RFID",
        "contract_id": f"NL-XWE-C{uid}",
        "issuer": "extrawest eMSP",
        "valid": True,
        "whitelist": "ALWAYS",
        "last_updated": "2026-01-01T00:00:00Z",
        **over,
    }


async def until(check: Callable[[], Awaitable[object]], what: str, rounds: int = 400) -> Any:
    """The first truthy answer of `check` (bounded: `rounds` tries 25 ms apart)."""
    for _ in range(rounds):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def seeded_peer(tmp_path: Path) -> AsyncIterator[Peer]:
    tokens_file = tmp_path / "xw-tokens.json"
    seeded = [
        xw_token(PULLED),
        xw_token(ASK_FIRST, whitelist="NEVER"),
        xw_token(KEPT_OFFLINE, whitelist="ALLOWED_OFFLINE"),
    ]
    tokens_file.write_text(json.dumps(seeded), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        str(PYTHON),
        str(PEERS / "extrawest_emsp.py"),
        TOKEN_A,
        str(tokens_file),
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


class Emsp:
    """The test acting for the extrawest eMSP (the package has no client), and reading what
    its crud received (GET /peer/received, outside OCPI)."""

    def __init__(self, peer: Peer, http: aiohttp.ClientSession) -> None:
        self.peer = peer
        self.http = http
        self.root = peer.versions_url.removesuffix("/ocpi/versions")
        self.ours: dict[str, str] = {}  # our endpoints as it learned them
        self.token = ""  # the token it calls us with

    async def registered(self) -> None:
        seen = await self.peer.event("registered")
        self.token = seen["cpo"]["token"]
        self.ours = {e["identifier"]: e["url"] for e in seen["endpoints"]["endpoints"]}

    async def received(self, module: str | None = None) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.root}/peer/received") as reply:
            every: list[dict[str, Any]] = await reply.json()
        return [r for r in every if module is None or r["module"] == module]

    async def call(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        auth = "Token " + base64.b64encode(self.token.encode()).decode()
        headers = {"Authorization": auth, "X-Request-ID": "xw-1", "X-Correlation-ID": "xw-1"}
        async with self.http.request(method, url, json=body, headers=headers) as reply:
            envelope: dict[str, Any] = await reply.json()
            return envelope

    async def command(self, name: str, body: dict[str, Any], ref: str) -> dict[str, Any]:
        # the CommandResult goes to its own commands receiver (py_ocpi: POST commands/{uid})
        response_url = f"{self.root}/ocpi/emsp/2.2.1/commands/{ref}"
        return await self.call(
            "POST", f"{self.ours['commands']}/{name}", {"response_url": response_url, **body}
        )


UPDATE_EVERY_S = "update_interval_s = 1.0"
EXTRA = """
[[emp]]
name = "xw"
protocol = "ocpi"
versions_url = "{versions_url}"
token_a = "{token_a}"
request_timeout_s = 5.0

[ocpi]
host = "127.0.0.1"
port = 0
country_code = "DE"
party_id = "CPO"
business_name = "Test CPO"
"""


@contextlib.asynccontextmanager
async def gateway_beside(
    tmp_path: Path, peer: Peer
) -> AsyncIterator[tuple[Harness, Emsp, SandboxEmp]]:
    """A gateway serving the extrawest eMSP (registered with it at start) and an OIOI
    sandbox EMP at the same time."""
    extra = EXTRA.format(versions_url=peer.versions_url, token_a=TOKEN_A)
    sandbox = SandboxEmp(api_key=OUTBOUND_KEY, verify_codes={EVCO: 0})
    await sandbox.start()
    path = write_config(tmp_path, emp_url=sandbox.url, extra=extra, sessions=UPDATE_EVERY_S)
    cfg = load_config(path, {})
    try:
        async with running_gateway(Gateway(cfg), sandbox) as gw, aiohttp.ClientSession() as http:
            xw = Emsp(peer, http)
            await xw.registered()
            link = await until(lambda: registered(gw), "the registration with extrawest")
            assert xw.token == link.token_in and "commands" in xw.ours
            yield gw, xw, sandbox
    finally:
        await sandbox.stop()


async def test_the_whole_ocpi_story_beside_an_oioi_emp(tmp_path: Path, seeded_peer: Peer) -> None:
    behind = [timedelta(hours=1)]  # the charger's clock: an hour behind until the stops

    def clock() -> datetime:
        return datetime.now(UTC) - behind[0]

    async with (
        gateway_beside(tmp_path, seeded_peer) as (gw, xw, sandbox),
        gw.charger("CP-BER-001", clock=clock) as cp,
    ):
        # 1. The gateway registered with it at start (its token A), on its own.
        # 2. Our Locations reach its locations receiver and pass its models; then the
        # EVSE status PATCHes.
        puts = await until(lambda: xw_writes(xw, "locations", LOCATION), "our Location PUT")
        location = puts[0]["data"]
        assert location["country_code"].upper() == "DE"
        assert OCPI_EVSE.lower() in {e["uid"].lower() for e in location["evses"]}
        await cp.connect()
        await cp.status(1, "Available")
        await cp.status(2, "Available")
        await until(lambda: evse_status(xw, OCPI_EVSE, "AVAILABLE"), "the EVSE status PATCH")

        # 3. Its tokens: pulled from its tokens Sender, one pushed by it (PUT).
        assert await until(lambda: authorized(cp, PULLED), "the pulled token") == "Accepted"
        assert await cp.authorize(PUSHED) == "Invalid"
        url = f"{xw.ours['tokens']}/NL/XWE/{PUSHED}"
        pushed = await xw.call("PUT", url, xw_token(PUSHED))
        assert pushed["status_code"] == 1000, pushed
        assert await cp.authorize(PUSHED) == "Accepted"

        # 4. START_SESSION → CommandResult at its commands receiver, Session PUT there.
        start = {"token": xw_token(PULLED), "location_id": LOCATION, "evse_uid": OCPI_EVSE}
        answer = await xw.command("START_SESSION", start, ref="start-1")
        assert answer["status_code"] == 1000 and answer["data"]["result"] == "ACCEPTED"
        results = await until(lambda: xw_writes(xw, "commands", "start-1"), "the result")
        assert [r["data"]["result"] for r in results] == ["ACCEPTED"]
        await until(lambda: present(cp.transaction_id(1)), "the OCPI transaction")

        # 5. Meanwhile the OIOI EMP starts on the next EVSE of the same charger.
        async with gw.client() as oioi:
            status, body = await oioi.session_start(OIOI_EVSE, EVCO)
            assert status == 200 and body["result"]["code"] == 0, body
            oioi_session = body["session-start"]["session-id"]
            await until(lambda: present(cp.transaction_id(2)), "the OIOI transaction")

            sessions = await until(lambda: xw_writes(xw, "sessions"), "the Session PUT")
            session = sessions[0]["data"]
            assert session["status"] == "ACTIVE"
            assert session["cdr_token"]["uid"].upper() == PULLED
            # CdrToken.contract_id is the eMSP's contract (mod_cdrs 10.4.5), not the card uid
            assert session["cdr_token"]["contract_id"].upper() == f"NL-XWE-C{PULLED}"
            session_id = session["id"]

            behind[0] = timedelta(0)
            tx1, tx2 = cp.transaction_id(1), cp.transaction_id(2)
            assert tx1 is not None and tx2 is not None
            await cp.meter_values(1, tx1, 7500)
            await cp.meter_values(2, tx2, 3000)
            # the progress (a PATCH of kwh, at most one a second: update_interval_s) reaches
            # its copy of the session while it charges; the charger reports until it has
            for _ in range(100):
                if await charging(xw, session_id, 7.5):
                    break
                await cp.meter_values(1, tx1, 7500)
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the Session PATCH never reached extrawest")
            stop = await xw.command("STOP_SESSION", {"session_id": session_id}, "stop-1")
            assert stop["data"]["result"] == "ACCEPTED", stop
            status, body = await oioi.session_stop(OIOI_EVSE, EVCO, oioi_session)
            assert status == 200 and body["result"]["code"] == 0, body

        stopped = await until(lambda: xw_writes(xw, "commands", "stop-1"), "stop result")
        assert stopped[0]["data"]["result"] == "ACCEPTED"
        cdrs = await until(lambda: xw_writes(xw, "cdrs"), "the CDR at extrawest")
        assert len(cdrs) == 1
        cdr = cdrs[0]["data"]
        assert cdr["total_energy"] == pytest.approx(7.5)
        assert cdr["cdr_token"]["uid"].upper() == PULLED
        assert cdr["cdr_token"]["contract_id"].upper() == f"NL-XWE-C{PULLED}"
        # and our CDRs Sender (GET list) names the token as the push did
        listed = await xw.call("GET", xw.ours["cdrs"], None)
        assert [c["cdr_token"]["contract_id"].upper() for c in listed["data"]] == [
            f"NL-XWE-C{PULLED}"
        ]
        final = [w["data"] for w in await xw_writes(xw, "sessions", session_id)][-1]
        assert final["status"] == "COMPLETED" and final["kwh"] == pytest.approx(7.5)
        # the OIOI EMP got its own CDR, with its own energy
        await sandbox.wait_for(lambda: oioi_session in sandbox.cdrs, timeout=10)
        assert sandbox.cdrs[oioi_session]["energy-consumed"] == pytest.approx(3.0)
        assert sandbox.cdrs[oioi_session]["connector-id"] == OIOI_EVSE


async def test_its_token_pages_link_to_another_origin(tmp_path: Path, seeded_peer: Peer) -> None:
    """extrawest's Link to the next page is https://{OCPI_HOST}/ocpi/cpo/2.2.1/tokens/ (its
    get_list always writes https and the CPO prefix, even for an eMSP's Sender served over
    http): we refuse a next page at another origin, so only a list that fits in one page
    (we ask limit=1000) can be pulled from it; a longer one leaves the list in force as it
    was."""
    async with gateway_beside(tmp_path, seeded_peer) as (gw, _, _):
        source = await until(lambda: pull_source(gw.store, "xw"), "its tokens Sender")
        url, token, parties = source
        client = gw.gateway.ocpi_client
        assert client is not None
        whole = await TokenPuller(client, gw.gateway.core.tokens).pull("xw", url, token, parties)
        assert (whole.total, whole.pages, whole.skipped) == (3, 1, 0)
        paged = TokenPuller(client, gw.gateway.core.tokens, page_limit=2)
        with pytest.raises(
            PullFailed, match=r"Link: next page 'https://127\.0\.0\.1:\d+/ocpi/cpo/"
        ):
            await paged.pull("xw", url, token, parties)
        listed = await gw.store.token_listings(KEPT_OFFLINE)
        assert [listing.partner for listing in listed] == ["xw"]


async def test_its_real_time_authorization_is_read_from_its_one_element_list(
    tmp_path: Path, seeded_peer: Peer
) -> None:
    """extrawest answers POST {tokens}/{uid}/authorize with `data` a list holding the
    AuthorizationInfo, where mod_tokens 12.2.2.2 answers one AuthorizationInfo. A list of
    exactly one is read as that one, so its ALLOWED decides: a NEVER token (always asked)
    is accepted, as is an ALLOWED_OFFLINE one."""
    async with (
        gateway_beside(tmp_path, seeded_peer) as (gw, xw, _),
        gw.charger("CP-BER-001") as cp,
    ):
        await cp.connect()
        assert await until(lambda: authorized(cp, PULLED), "the pulled token") == "Accepted"
        assert await cp.authorize(ASK_FIRST) == "Accepted"
        assert await cp.authorize(KEPT_OFFLINE) == "Accepted"
        asked = {w["id"] for w in await xw.received("tokens") if w["op"] == "authorize"}
        assert asked == {ASK_FIRST.lower(), KEPT_OFFLINE.lower()}  # it was asked, both times


async def registered(gw: Harness) -> Any:
    link = await gw.store.link("xw")
    return link if link is not None and link.state is LinkState.REGISTERED else None


async def xw_writes(xw: Emsp, module: str, id: str | None = None) -> list[dict[str, Any]]:
    """What the eMSP's crud stored for `module` (and this object id), in order."""
    found = await xw.received(module)
    return [w for w in found if id is None or w["id"].lower() == id.lower()]


async def charging(xw: Emsp, session_id: str, kwh: float) -> bool:
    """Whether the eMSP's copy of the session is ACTIVE with this energy."""
    writes = await xw_writes(xw, "sessions", session_id)
    return (
        bool(writes)
        and writes[-1]["data"]["status"] == "ACTIVE"
        and (writes[-1]["data"]["kwh"] == pytest.approx(kwh))
    )


async def evse_status(xw: Emsp, evse_uid: str, status: str) -> bool:
    """Whether the eMSP's copy of our Location shows this EVSE with this status."""
    writes = await xw_writes(xw, "locations", LOCATION)
    if not writes:
        return False
    evses = {e["uid"].lower(): e["status"] for e in writes[-1]["data"]["evses"]}
    return evses.get(evse_uid.lower()) == status


async def authorized(cp: SimCharger, id_tag: str) -> str | None:
    answer = await cp.authorize(id_tag)
    return answer if answer == "Accepted" else None


async def present(value: object) -> bool:
    return value is not None
