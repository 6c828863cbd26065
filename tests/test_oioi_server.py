"""The OIOI endpoint over real HTTP: every documented error, partner scoping, body limits,
and the operations endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from tests.conftest import (
    INBOUND_KEY,
    OUTBOUND_KEY,
    PARTNER,
    Harness,
    running_gateway,
    write_config,
)

EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"
OTHER_KEY = "test-inbound-key-0002"
OTHER_PARTNER = "test-partner-identifier-0002"
SMALL_LIMIT = 4096


def two_emps(url: str) -> str:
    """Two EMP partners that both post to the same sandbox."""
    return f"""
        [[emp]]
        name = "sandbox"
        url = "{url}"
        api_key = "{OUTBOUND_KEY}"
        inbound_api_key = "{INBOUND_KEY}"
        partner_identifier = "{PARTNER}"

        [[emp]]
        name = "other"
        url = "{url}"
        api_key = "{OUTBOUND_KEY}"
        inbound_api_key = "{OTHER_KEY}"
        partner_identifier = "{OTHER_PARTNER}"
    """


@pytest.fixture
async def pair(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[Harness]:
    """A gateway with two EMP partners and a small body limit."""
    path = write_config(tmp_path, emps=two_emps(emp.url))
    text = path.read_text().replace("[oioi]", f"[oioi]\nmax_body_bytes = {SMALL_LIMIT}")
    path.write_text(text)
    async with running_gateway(Gateway(load_config(path, {})), emp) as h:
        yield h


async def post(
    url: str, data: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    sent = {"Authorization": f"key={INBOUND_KEY}", "Content-Type": "application/json"}
    sent.update(headers or {})
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=data, headers=sent) as resp,
    ):
        body = await resp.read()
        assert resp.content_type == "application/json"
        doc = orjson.loads(body)
        assert isinstance(doc, dict)
        return resp.status, doc


def code_of(body: dict[str, Any]) -> int:
    return int(body["result"]["code"])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"not json", "not UTF-8 JSON"),
        (b'{"session-start": {}', "not UTF-8 JSON"),
        (b'"\xff\xfe"', "not UTF-8 JSON"),
        (b"[1, 2]", "body: expected a JSON object, got array"),
        (b"{}", "expected exactly one top-level key, got 0"),
        (b'{"session-start": {}, "rfid-post": {}}', "got 2: session-start, rfid-post"),
        (b'{"cdr-post": {}}', "supported calls: session-start, session-stop, rfid-post"),
        (b'{"session-start": []}', "session-start: expected an object, got array"),
        (
            b'{"session-start": {"user": {"identifier-type": "evco-id", "identifier": "X"}}}',
            "session-start.connector-id: expected a string, got nothing (the field is missing)",
        ),
        (
            b'{"session-start": {"user": {"identifier-type": "evco-id", "identifier": "X"},'
            b' "connector-id": 7}}',
            "session-start.connector-id: expected a string, got number",
        ),
        (
            b'{"session-stop": {"user": {"identifier-type": "mail", "identifier": "X"},'
            b' "connector-id": "E"}}',
            "session-stop.user.identifier-type: expected one of evco-id, rfid, username, got 'mail'",
        ),
        (
            b'{"rfid-post": {"partner-identifier": "p", "rfids": "1234"}}',
            "rfid-post.rfids: expected an array of strings, got '1234'",
        ),
    ],
)
async def test_malformed_requests_get_400_230_naming_the_problem(
    harness: Harness, data: bytes, expected: str
) -> None:
    status, body = await post(harness.oioi_url, data)
    assert (status, code_of(body)) == (400, 230), body
    assert expected in body["result"]["message"]


async def test_a_charset_other_than_utf8_is_refused(harness: Harness) -> None:
    data = orjson.dumps({"session-start": {}})
    status, body = await post(
        harness.oioi_url, data, {"Content-Type": "application/json; charset=iso-8859-1"}
    )
    assert (status, code_of(body)) == (400, 230)
    assert "UTF-8" in body["result"]["message"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "key=", "key=wrong", f"Bearer {INBOUND_KEY}", f"key={INBOUND_KEY}x", "key=\u00e9"],
)
async def test_missing_or_wrong_key_gets_401_210(
    harness: Harness, authorization: str | None
) -> None:
    async with EmpClient(harness.oioi_url, INBOUND_KEY) as client:
        status, body = await client.raw(
            {"rfid-post": {"partner-identifier": PARTNER, "rfids": []}},
            headers={"Authorization": authorization},
        )
    assert isinstance(body, dict)
    assert (status, code_of(body)) == (401, 210)
    assert await harness.store.whitelist_counts() == {}


async def test_business_outcomes_are_200_with_their_code(harness: Harness) -> None:
    async with harness.client() as client:
        status, body = await client.session_start("DE*CPO*E9999*9", EVCO)
        assert (status, code_of(body)) == (200, 181)
        status, body = await client.session_stop(EVSE, EVCO, "no-such-session")
        assert (status, code_of(body)) == (200, 182)
        # The charger is not connected: an EVSE error, still a business answer.
        status, body = await client.session_start(EVSE, EVCO)
        assert (status, code_of(body)) == (200, 310)


async def test_internal_failure_is_500_100_without_details(harness: Harness) -> None:
    db = harness.gateway.db
    await db.close()  # every store call now fails inside the handler
    try:
        async with harness.client() as client:
            status, body = await client.rfid_post(PARTNER, ["12345678"])
        assert (status, code_of(body)) == (500, 100)
        assert body["result"]["message"] == "Internal server error."
        assert "Traceback" not in orjson.dumps(body).decode()
        async with aiohttp.ClientSession() as http, http.get(harness.base_url + "/healthz") as r:
            assert r.status == 503
            assert (await r.json())["db"] == "closed"
    finally:
        await db.open()
    async with harness.client() as client:
        status, body = await client.rfid_post(PARTNER, ["12345678"])
    assert (status, code_of(body)) == (200, 0)


# --- body limits ----------------------------------------------------------------------------
async def raw_exchange(port: int, head: bytes, body: bytes) -> tuple[int, dict[str, Any]]:
    """Send a request by hand (so the body can lie about its size) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(65536)
            while b"\r\n\r\n" not in answer:
                more = await reader.read(65536)
                if not more:
                    break
                answer += more
            header, _, rest = answer.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":", 1)[1]
                    for line in header.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            while len(rest) < length:
                more = await reader.read(65536)
                if not more:
                    break
                rest += more
    finally:
        writer.close()
    status = int(header.split(b" ", 2)[1])
    return status, orjson.loads(rest[:length])


def head(path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: key={INBOUND_KEY}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


async def test_declared_length_over_the_limit_is_refused_unread(pair: Harness) -> None:
    assert pair.gateway.oioi is not None
    port, path = pair.gateway.oioi.port, pair.gateway.config.oioi.path
    # Claims a gigabyte, sends a few bytes: the answer comes without waiting for the rest.
    status, body = await raw_exchange(
        port, head(path, f"Content-Length: {1024**3}\r\n"), b'{"rfid-post":'
    )
    assert (status, code_of(body)) == (413, 230)
    assert str(SMALL_LIMIT) in body["result"]["message"]
    await assert_still_serving(pair)


async def test_chunked_body_over_the_limit_is_refused(pair: Harness) -> None:
    assert pair.gateway.oioi is not None
    port, path = pair.gateway.oioi.port, pair.gateway.config.oioi.path
    rfids = ",".join(f'"{i:08X}"' for i in range(SMALL_LIMIT // 4))
    payload = f'{{"rfid-post": {{"partner-identifier": "{PARTNER}", "rfids": [{rfids}]}}}}'
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (payload.encode()[i : i + 1000] for i in range(0, len(payload), 1000))
    )
    status, body = await raw_exchange(
        port, head(path, "Transfer-Encoding: chunked\r\n"), chunks + b"0\r\n\r\n"
    )
    assert (status, code_of(body)) == (413, 230)
    assert await pair.store.whitelist_counts() == {}
    await assert_still_serving(pair)


async def assert_still_serving(h: Harness) -> None:
    async with h.client() as client:
        status, body = await client.rfid_post(PARTNER, ["AB"])
    assert (status, code_of(body)) == (200, 0)
    assert body["rfid"] == {"processed": 1}


# --- partners -------------------------------------------------------------------------------
async def test_a_partner_posts_only_its_own_whitelist(pair: Harness) -> None:
    async with EmpClient(pair.oioi_url, OTHER_KEY) as other:
        status, body = await other.rfid_post(PARTNER, ["11111111"])
        assert (status, code_of(body)) == (403, 220)
        assert "partner-identifier" in body["result"]["message"]
        status, body = await other.rfid_post(OTHER_PARTNER, ["11111111", "22222222"])
        assert (status, code_of(body)) == (200, 0)
    async with pair.client() as mine:
        status, body = await mine.rfid_post(PARTNER, ["22222222", "33333333", "44444444"])
        assert (status, code_of(body)) == (200, 0)
    assert await pair.store.whitelist_counts() == {"other": 2, "sandbox": 3}
    assert await pair.store.whitelist_partners("22222222") == ["other", "sandbox"]


async def test_a_partner_stops_only_its_own_sessions(pair: Harness) -> None:
    async with pair.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.status(1, "Available")
        async with pair.client() as mine, EmpClient(pair.oioi_url, OTHER_KEY) as other:
            status, body = await mine.session_start(EVSE, EVCO)
            assert (status, code_of(body)) == (200, 0), body
            session_id = body["session-start"]["session-id"]
            status, body = await other.session_stop(EVSE, EVCO, session_id)
            assert (status, code_of(body)) == (403, 220)
            # Without a session id the running session on the EVSE is found: still not theirs.
            status, body = await other.session_stop(EVSE, EVCO)
            assert (status, code_of(body)) in {(403, 220), (200, 182)}
            session = await pair.store.session(session_id)
            assert session is not None and session.state not in ("finished", "failed")
            status, body = await mine.session_stop(EVSE, EVCO, session_id)
            assert (status, code_of(body)) == (200, 0)


# --- operations -----------------------------------------------------------------------------
async def test_healthz_reports_db_listeners_outbox_and_chargers(harness: Harness) -> None:
    emp = harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3)
    for _ in range(200):  # the station-posts are marked delivered once answered
        if not await harness.store.db.all("SELECT id FROM outbox WHERE state = 'pending'"):
            break
        await asyncio.sleep(0.025)
    async with aiohttp.ClientSession() as http, http.get(harness.base_url + "/healthz") as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "ok"
    assert body["db"] == "open" and body["listeners"] == "up"
    assert body["chargers_connected"] == 0
    assert body["tasks"] == "up" and body["jobs"] == "up"
    assert body["outbox_oldest_pending_s"] == 0.0  # nothing pending: the stations were posted


METRICS = (
    "cpo_gateway_chargers_connected",
    "cpo_gateway_ocpp_messages_total",
    "cpo_gateway_ocpp_auth_failures_total",
    "cpo_gateway_oioi_requests_total",
    "cpo_gateway_outbox_depth",
    "cpo_gateway_outbox_oldest_age_seconds",
    "cpo_gateway_whitelist_size",
    "cpo_gateway_authorizations_total",
)


async def test_metrics_expose_every_documented_family(harness: Harness) -> None:
    async with harness.client() as client:
        await client.rfid_post(PARTNER, ["12345678", "ABCDEF01"])
        await client.session_start("DE*CPO*E9999*9", EVCO)
    async with aiohttp.ClientSession() as http, http.get(harness.base_url + "/metrics") as r:
        assert r.status == 200
        assert r.content_type == "text/plain"
        text = await r.text()
    for name in METRICS:
        assert f"# TYPE {name} " in text, name
    assert 'cpo_gateway_whitelist_size{emp="sandbox"} 2' in text
    assert 'cpo_gateway_oioi_requests_total{call="rfid-post",code="0"} 1' in text
    assert 'cpo_gateway_oioi_requests_total{call="session-start",code="181"} 1' in text
