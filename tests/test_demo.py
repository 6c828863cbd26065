"""`cpo-gateway demo` plays the whole story and shows both sides' protocols, causes before
effects, with a 1.6 and a 2.0.1 charger side by side, and an OIOI EMP and an OCPI eMSP
served at the same time by the same charger."""

from __future__ import annotations

import asyncio
import io
import re

import aiohttp
import pytest

from cpo_gateway.sim.demo import (
    INBOUND_KEY,
    OCPI_EVSE,
    OCPI_LOCATION,
    OCPI_WH,
    OIOI_EVSE,
    heartbeats,
    play,
)
from cpo_gateway.sim.demo_ocpi import EMSP_CARD
from tests.conftest import Harness


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines()):
        if needle in line:
            return i
    raise AssertionError(f"no line with {needle!r}")


async def test_demo_story_runs_to_the_end() -> None:
    out = io.StringIO()
    counts = await play(out, keep_running=False)
    text = out.getvalue()
    assert counts["stations"] == 4
    assert counts["cdrs"] == 3  # the remote sessions (1.6 and 2.0.1) and the offline card one
    assert counts["verify"] == 1
    assert counts["statuses"] >= 5
    for needle in (
        "session-start",
        "RemoteStartTransaction",
        "SendLocalList",
        "session-post",
        "rfid-verify",
        "CP-MUC-DC1 was told: Invalid",
        "against its local list: accepted",
        # The EVSE and its status are shown whole.
        "connector-post-status DE*CPO*E1001*1 Available",
        "connector-post-status DE*CPO*E1001*1 Offline",
        # The OCPP 2.0.1 charger beside the 1.6 ones.
        "CP-KOE-201 speaks ocpp2.0.1",
        "gw -> CP-KOE-201 RequestStartTransaction",
        "gw -> CP-KOE-201 RequestStopTransaction",
    ):
        assert needle in text, needle
    events = [line for line in text.splitlines() if "CP-KOE-201 -> gw TransactionEvent" in line]
    assert len(events) == 5, events  # Started, three Updated, Ended
    # The 2.0.1 session's CDR follows its Ended event.
    last_event = max(i for i, line in enumerate(text.splitlines()) if line in events)
    cdr_lines = [i for i, line in enumerate(text.splitlines()) if "gw -> EMP  session-post" in line]
    assert any(i > last_event for i in cdr_lines)
    # Causes before effects.
    assert line_of(text, "CP-BER-001 -> gw StopTransaction") < line_of(text, "session-post")
    assert line_of(text, "rfid-verify DEADBEEF") < line_of(text, "CP-MUC-DC1 -> gw Authorize")
    assert line_of(text, "CP-MUC-DC1 -> gw Authorize") < line_of(text, "was told: Invalid")
    # --once ends with what happened, not with an invitation to a gateway that has stopped.
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("== Done: the EMP received 4 stations, 3 CDRs")
    assert "the OCPI eMSP (registered) received 4 Locations, 1 CDR(s)" in last
    assert "keeps running" not in text and "\x1b[" not in text
    check_the_ocpi_part(counts, text)


def check_the_ocpi_part(counts: dict[str, object], text: str) -> None:
    """The eMSP was registered on both sides, read and received the Locations, pushed its
    token, started and stopped its session on the charger the OIOI EMP charged on at the
    same time, and got its results, session updates and the CDR with the energy metered."""
    ocpi = counts["ocpi"]
    assert isinstance(ocpi, dict)
    assert ocpi["link"] == "registered" and counts["ocpi_emsp_registered"] is True
    assert ocpi["locations_read"] == 4 and counts["ocpi_locations_put"] == 4
    assert ocpi["token_status"] == 1000
    assert ocpi["START_SESSION response"] == "ACCEPTED" == ocpi["start result"]
    assert ocpi["STOP_SESSION response"] == "ACCEPTED" == ocpi["stop result"]
    status_patches = counts["ocpi_status_patches"]
    assert isinstance(status_patches, int) and status_patches >= 8  # every EVSE, then changes
    puts, patches = counts["ocpi_session_puts"], counts["ocpi_session_patches"]
    assert puts == 2 and isinstance(patches, int) and patches >= 1  # start, updates, final
    cdrs = counts["ocpi_cdrs"]
    assert isinstance(cdrs, dict) and len(cdrs) == 1
    (cdr,) = cdrs.values()
    assert cdr["total_energy"] == pytest.approx(OCPI_WH[-1] / 1000)
    assert cdr["cdr_token"]["uid"] == EMSP_CARD
    assert (cdr["country_code"], cdr["party_id"]) == ("DE", "CPO")
    assert cdr["cdr_location"]["id"] == OCPI_LOCATION
    assert cdr["cdr_location"]["evse_uid"] == OCPI_EVSE
    for needle in (
        "gw -> eMSP PUT location DE-BER-ALEX-01 (2 EVSEs)",
        "eMSP -> gw GET locations",
        "eMSP <- gw HTTP 200 1000 4 objects",
        f"eMSP -> gw PUT token {EMSP_CARD}",
        f"eMSP -> gw POST commands START_SESSION {OCPI_EVSE}",
        "gw -> eMSP CommandResult START_SESSION ACCEPTED",
        "gw -> eMSP CommandResult STOP_SESSION ACCEPTED",
        f"gw -> eMSP PATCH EVSE {OCPI_EVSE} CHARGING",
        f"kWh {EMSP_CARD}",
    ):
        assert needle in text, needle
    assert f"COMPLETED {OCPI_WH[-1] / 1000} kWh" in text
    # At the same time on the same charger: the eMSP's start reached CP-BER-001 before the
    # OIOI EMP's session there stopped, and each partner got its own CDR after its stop.
    ocpi_start = line_of(text, f'RemoteStartTransaction {{"idTag":"{EMSP_CARD}"')
    oioi_stop = line_of(text, "CP-BER-001 -> gw StopTransaction")
    assert line_of(text, f'session-start {{"connector-id":"{OIOI_EVSE}') < ocpi_start
    assert ocpi_start < oioi_stop < line_of(text, "gw -> EMP  session-post")
    assert ocpi_start < line_of(text, "gw -> eMSP CommandResult START_SESSION")
    lines = text.splitlines()
    stops = [i for i, line in enumerate(lines) if "CP-BER-001 -> gw StopTransaction" in line]
    assert len(stops) >= 2
    assert stops[1] < line_of(text, "gw -> eMSP POST cdr")


async def test_the_demo_shows_requests_from_outside_and_keeps_its_chargers() -> None:
    out = io.StringIO()
    stop = asyncio.Event()
    demo = asyncio.create_task(play(out, keep_running=True, stop=stop))
    try:
        for _ in range(1500):
            if "Your turn" in out.getvalue():
                break
            await asyncio.sleep(0.02)
        text = out.getvalue()
        found = re.search(r"OIOI endpoint: (\S+)", text)
        assert found is not None, text
        body = {
            "session-start": {
                "user": {"identifier-type": "evco-id", "identifier": "DE-8PS-C12345-6"},
                "connector-id": "DE*CPO*E1001*2",
            }
        }
        headers = {"Authorization": f"key={INBOUND_KEY}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(found.group(1), json=body, headers=headers) as resp,
        ):
            answer = await resp.json()
        assert answer["result"]["code"] == 0, answer
        for _ in range(250):
            if "(from outside the demo)" in out.getvalue():
                break
            await asyncio.sleep(0.02)
        tail = out.getvalue()[len(text) :]
        assert "EMP -> gw  session-start (from outside the demo) -> code 0" in tail
        assert "RemoteStartTransaction" in tail
        # The curl for the gateway's OCPI versions, with the eMSP's token, works.
        versions = re.search(r"curl -H 'Authorization: (Token \S+)' (\S+)", text)
        assert versions is not None, text[-800:]
        auth = {"Authorization": versions.group(1)}
        async with (
            aiohttp.ClientSession() as http,
            http.get(versions.group(2), headers=auth) as resp,
        ):
            listed = await resp.json()
        assert resp.status == 200 and [v["version"] for v in listed["data"]] == ["2.2.1"]
        # The START_SESSION curl, sent as printed: ACCEPTED, the charger is asked, and the
        # CommandResult reaches the eMSP and the timeline.
        start = re.search(
            r"curl -s -X POST -H '(Authorization: Token \S+)' "
            r"-H 'Content-Type: application/json' -d '(.+)' (\S+)",
            text,
        )
        assert start is not None, text[-1200:]
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                start.group(3),
                data=start.group(2),
                headers={
                    "Authorization": start.group(1).split(": ", 1)[1],
                    "Content-Type": "application/json",
                },
            ) as resp,
        ):
            command = await resp.json()
        assert command["data"]["result"] == "ACCEPTED", command
        for _ in range(250):
            if "CommandResult START_SESSION ACCEPTED" in out.getvalue()[len(text) :]:
                break
            await asyncio.sleep(0.02)
        tail = out.getvalue()[len(text) :]
        assert "gw -> eMSP CommandResult START_SESSION ACCEPTED" in tail
        assert 'gw -> CP-HH-001 RemoteStartTransaction {"idTag":"0A1B2C3D","connectorId":2}' in tail
        # The console's URL and a login that works.
        console = re.search(r"Console: (\S+)  \(log in as 'demo' with the token (\S+)\)", text)
        assert console is not None, text[-800:]
        # unsafe: the jar keeps cookies of an IP address (the console is on 127.0.0.1).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(console.group(1) + "login") as resp:
                form = await resp.text()
            nonce = re.search(r'name="nonce" value="([^"]+)"', form)
            assert nonce is not None
            login = {"name": "demo", "password": console.group(2), "nonce": nonce.group(1)}
            async with http.post(console.group(1) + "login", data=login) as resp:
                page = await resp.text()
            assert resp.status == 200 and "CP-BER-001" in page and "Log out" in page
    finally:
        stop.set()
        await asyncio.wait_for(demo, 30)


async def test_the_demo_chargers_heartbeat_so_the_gateway_keeps_them(harness: Harness) -> None:
    """Without heartbeats the gateway closed the demo's chargers as silent after three
    intervals, and the user's curl then got 310."""
    async with harness.charger("CP-BER-001") as cp:
        await cp.connect()
        assert harness.gateway.csms is not None
        handlers = harness.gateway.csms.handlers
        before = handlers.counts.get("Heartbeat", 0)
        beating = asyncio.create_task(heartbeats([cp], period_s=0.05))
        try:
            for _ in range(200):
                if handlers.counts.get("Heartbeat", 0) >= before + 3:
                    break
                await asyncio.sleep(0.02)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
        assert handlers.counts.get("Heartbeat", 0) >= before + 3
