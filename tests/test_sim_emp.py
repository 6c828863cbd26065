"""The sandbox EMP against a real aiohttp client, and EmpClient against a fake gateway endpoint."""

from __future__ import annotations

import asyncio
import io
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.sim.emp.ledger import EmpLedger
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp, curl_example
from cpo_gateway.sim.emp.wire import WireError, check_authorization, parse_envelope

API_KEY = "sandbox-key-4f1c2a9e"
PARTNER = "partner-7d2e9b41c0a6f385"
EVSE = "DE*8PS*E123456"
EVCO = "DE*8PS*123456*7"

STATION: dict[str, Any] = {
    "station": {
        "id": "station-1",
        "name": "Depot",
        "latitude": 52.5,
        "longitude": 13.4,
        "cpo-id": "DE*8PS",
        "is-open-24": True,
        "connectors": [{"id": EVSE, "name": "Type2", "speed": 22.0}],
    },
    "partner-identifier": PARTNER,
}


def status_body(status: str = "Available", evse: str = EVSE) -> dict[str, Any]:
    return {"connector-id": evse, "status": status, "partner-identifier": PARTNER}


def cdr_body(session_id: str = "sess-1", energy: float = 16.5) -> dict[str, Any]:
    return {
        "user": {"identifier-type": "rfid", "identifier": "12345678"},
        "session-id": session_id,
        "connector-id": EVSE,
        "session-interval": {"start": "2024-01-01T11:00:00+00:00"},
        "energy-consumed": energy,
        "partner-identifier": PARTNER,
    }


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def code(self) -> Any:
        return self.body["result"]["code"]


@pytest.fixture
async def emp() -> AsyncIterator[SandboxEmp]:
    ticks = iter(range(1000, 100_000))
    async with SandboxEmp(api_key=API_KEY, clock=lambda: float(next(ticks))) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No pooled connections: each request sees whether the EMP is listening right now.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    emp: SandboxEmp,
    call: str | None,
    body: Any = None,
    *,
    key: str | None = API_KEY,
    raw: bytes | None = None,
) -> Answer:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"key={key}"
    data = raw if raw is not None else orjson.dumps({call: body})
    async with http.post(emp.url, data=data, headers=headers) as response:
        payload = await response.read()
        parsed = orjson.loads(payload) if payload.startswith(b"{") else {"raw": payload}
        return Answer(response.status, parsed, dict(response.headers))


# -- request level -------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
async def test_bad_or_missing_key_is_401_210(
    emp: SandboxEmp, http: aiohttp.ClientSession, key: str | None
) -> None:
    answer = await post(http, emp, "station-post", STATION, key=key)
    assert (answer.status, answer.code) == (401, 210)
    assert emp.stations == {}
    assert (emp.requests[-1].answered_status, emp.requests[-1].answered_code) == (401, 210)


async def test_other_auth_scheme_is_refused(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with http.post(emp.url, json={"station-post": STATION}, headers=headers) as response:
        assert response.status == 401
        assert (await response.json())["result"]["code"] == 210


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"not json", "not valid UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"{}", "exactly one top-level key, got 0"),
        (b'{"rfid-verify": {}, "session-post": {}}', "exactly one top-level key, got 2"),
        (b'{"rfid-verify": "12345678"}', "rfid-verify: expected an object"),
        (b'{"vehicle-get-all": {}}', "vehicle-get-all: not a call this EMP accepts"),
        (b'{"rfid-verify": {"rfid": 5}}', "rfid-verify.rfid: expected a non-empty string"),
    ],
)
async def test_envelope_errors_are_400_230(
    emp: SandboxEmp, http: aiohttp.ClientSession, raw: bytes, fragment: str
) -> None:
    answer = await post(http, emp, None, raw=raw)
    assert (answer.status, answer.code) == (400, 230)
    assert fragment in answer.body["result"]["message"]


async def test_oversize_body_is_400_230(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    oversize = io.BytesIO(b"{" + b" " * (2 * 1024 * 1024) + b"}")
    headers = {"Authorization": f"key={API_KEY}", "Content-Type": "application/json"}
    async with http.post(emp.url, data=oversize, headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["result"]["code"] == 230
    assert emp.requests[-1].answered_status == 400


async def test_requests_are_recorded_with_headers_and_clock(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    await post(http, emp, "station-post", STATION)
    await post(http, emp, "rfid-verify", {"rfid": "12345678"})
    first, second = emp.requests
    assert first.call == "station-post"
    assert first.body == STATION
    assert first.headers["Authorization"] == f"key={API_KEY}"
    assert first.headers["Content-Type"] == "application/json"
    assert first.received_at < second.received_at
    assert (first.answered_status, first.answered_code) == (200, 0)
    assert emp.calls("rfid-verify") == [{"rfid": "12345678"}]


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="after start"):
        _ = SandboxEmp(api_key=API_KEY).url


# -- the calls -----------------------------------------------------------------------------


async def test_station_post_stores_and_deletes(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    assert (await post(http, emp, "station-post", STATION)).code == 0
    assert emp.stations["station-1"]["connectors"][0]["id"] == EVSE
    deleted = {**STATION, "station": {**STATION["station"], "deleted": True}}
    assert (await post(http, emp, "station-post", deleted)).code == 0
    assert emp.stations == {}


async def test_station_post_deleted_beside_the_station_is_honoured(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    await post(http, emp, "station-post", STATION)
    await post(http, emp, "station-post", {**STATION, "deleted": True})
    assert emp.stations == {}


async def test_status_needs_a_posted_station(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    answer = await post(http, emp, "connector-post-status", status_body())
    assert (answer.status, answer.code) == (200, 181)
    assert emp.statuses == {}
    await post(http, emp, "station-post", STATION)
    await post(http, emp, "connector-post-status", status_body("Occupied"))
    await post(http, emp, "connector-post-status", status_body("Available"))
    assert emp.statuses == {EVSE: "Available"}
    await post(http, emp, "station-post", {**STATION, "deleted": True})
    assert (await post(http, emp, "connector-post-status", status_body())).code == 181


async def test_status_without_station_check(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    emp.require_station = False
    assert (await post(http, emp, "connector-post-status", status_body("Offline"))).code == 0
    assert emp.statuses == {EVSE: "Offline"}


async def test_status_outside_the_spec_is_400(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    answer = await post(http, emp, "connector-post-status", status_body("Charging"))
    assert (answer.status, answer.code) == (400, 230)
    assert "connector-post-status.status" in answer.body["result"]["message"]


async def test_session_post_dedups_on_session_id(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    for _ in range(3):
        assert (await post(http, emp, "session-post", cdr_body())).code == 0
    await post(http, emp, "session-post", cdr_body("sess-2"))
    assert emp.duplicates == 2
    assert sorted(emp.cdrs) == ["sess-1", "sess-2"]
    assert len(emp.calls("session-post")) == 4


async def test_session_post_repeat_keeps_the_newest(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    await post(http, emp, "session-post", cdr_body(energy=0.0))
    await post(http, emp, "session-post", cdr_body(energy=7.25))
    assert emp.cdrs["sess-1"]["energy-consumed"] == 7.25
    assert emp.duplicates == 1


async def test_session_post_missing_field_names_it(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    body = cdr_body()
    del body["session-interval"]["start"]
    answer = await post(http, emp, "session-post", body)
    assert (answer.status, answer.code) == (400, 230)
    assert "session-post.session-interval.start" in answer.body["result"]["message"]
    assert emp.cdrs == {}


async def test_rfid_verify_answers_from_verify_codes(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    emp.verify_codes = {"04523022AA4881": 0, "0477BD22AA4880": 192}
    codes = [
        (await post(http, emp, "rfid-verify", {"rfid": uid})).code
        for uid in ("04523022AA4881", "0477BD22AA4880", "0477BD22AA4AAA")
    ]
    assert codes == [0, 192, 191]


async def test_rfid_verify_refuses_unnormalised_uids(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, emp, "rfid-verify", {"rfid": "abcdefab"})
    assert (answer.status, answer.code) == (400, 230)


# -- faults --------------------------------------------------------------------------------


async def test_fail_next_503_with_retry_after(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    emp.fail_next(1, 503, retry_after="2")
    answer = await post(http, emp, "session-post", cdr_body())
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "2"
    assert emp.cdrs == {}
    assert (await post(http, emp, "session-post", cdr_body())).status == 200
    assert [(r.answered_status, r.answered_code) for r in emp.requests] == [(503, 100), (200, 0)]


@pytest.mark.parametrize(
    ("status", "code"), [(500, 100), (400, 230), (429, 100), (200, 100), (401, 210)]
)
async def test_fail_next_answers_n_times(
    emp: SandboxEmp, http: aiohttp.ClientSession, status: int, code: int
) -> None:
    emp.fail_next(2, status, code=code)
    answers = [await post(http, emp, "session-post", cdr_body()) for _ in range(3)]
    assert [(a.status, a.code) for a in answers] == [(status, code), (status, code), (200, 0)]
    assert emp.duplicates == 0


async def test_fail_next_with_a_raw_body(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    emp.fail_next(1, 502, body=b"<html>bad gateway</html>")
    answer = await post(http, emp, "rfid-verify", {"rfid": "12345678"})
    assert answer.status == 502
    assert answer.body == {"raw": b"<html>bad gateway</html>"}
    assert emp.requests[-1].answered_code is None


async def test_fail_call_hits_only_that_call(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    emp.fail_call("session-post", 500, 100, 1)
    await post(http, emp, "session-post", cdr_body(), key="wrong")  # 401 first, fault kept
    assert (await post(http, emp, "station-post", STATION)).status == 200
    failed = await post(http, emp, "session-post", cdr_body())
    assert (failed.status, failed.code) == (500, 100)
    assert (await post(http, emp, "session-post", cdr_body())).code == 0
    assert [r.answered_status for r in emp.requests] == [401, 200, 500, 200]


async def test_refuse_then_accept_on_the_same_port(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    url = emp.url
    await emp.refuse()
    assert not emp.listening
    with pytest.raises(aiohttp.ClientConnectorError):
        await post(http, emp, "station-post", STATION)
    await emp.accept()
    assert emp.url == url
    assert (await post(http, emp, "station-post", STATION)).code == 0
    assert len(emp.requests) == 1


async def test_refuse_drops_kept_alive_connections(emp: SandboxEmp) -> None:
    async with aiohttp.ClientSession() as pooled:
        assert (await post(pooled, emp, "station-post", STATION)).status == 200
        await emp.refuse()
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(pooled, emp, "station-post", STATION)
    assert len(emp.requests) == 1


async def test_slow_answers_time_the_client_out(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    emp.set_delay(30.0)
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.3):
            await post(http, emp, "session-post", cdr_body())
    # Processed before the slow answer: a retry is a duplicate, as with a real slow EMP.
    assert "sess-1" in emp.cdrs
    emp.set_delay(0)
    assert (await post(http, emp, "session-post", cdr_body())).code == 0
    assert emp.duplicates == 1


def test_delay_must_be_finite_and_positive() -> None:
    emp = SandboxEmp(api_key=API_KEY)
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="delay"):
            emp.set_delay(bad)


async def test_stop_wakes_slow_answers() -> None:
    emp = SandboxEmp(api_key=API_KEY)
    await emp.start()
    emp.set_delay(30.0)
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(post(http, emp, "station-post", STATION))
        await emp.wait_for(lambda: len(emp.requests) == 1)
        await emp.stop()
        outcome = await asyncio.gather(request, return_exceptions=True)
    assert isinstance(outcome[0], Answer | aiohttp.ClientError)


# -- waiting -------------------------------------------------------------------------------


async def test_wait_for_sees_a_later_request(emp: SandboxEmp, http: aiohttp.ClientSession) -> None:
    request = asyncio.create_task(post(http, emp, "session-post", cdr_body()))
    await emp.wait_for(lambda: "sess-1" in emp.cdrs)
    assert (await request).code == 0


async def test_wait_for_times_out_with_a_message(
    emp: SandboxEmp, http: aiohttp.ClientSession
) -> None:
    await post(http, emp, "rfid-verify", {"rfid": "12345678"})

    def cdr_arrived() -> bool:
        return bool(emp.cdrs)

    with pytest.raises(TimeoutError) as caught:
        await emp.wait_for(cdr_arrived, timeout=0.05)
    message = str(caught.value)
    assert "cdr_arrived" in message
    assert "rfid-verify 200/191" in message


# -- parsers of outside input --------------------------------------------------------------

FIELD_NAMES = [
    "station", "connector-id", "status", "session-id", "user", "rfid", "connectors", "id",
    "partner-identifier", "session-interval", "start", "identifier", "identifier-type", "deleted",
]  # fmt: skip
# Bodies shaped like OIOI calls (real field names, any value types) reach past the first check.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.just("Available"),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=4)
    ),
    max_leaves=8,
)


@given(st.binary(max_size=200))
def test_envelope_parser_takes_any_bytes(raw: bytes) -> None:
    try:
        call, body = parse_envelope(raw)
    except WireError as error:
        assert (error.http_status, error.code) == (400, 230)
    else:
        assert isinstance(call, str)
        assert isinstance(body, dict)


@given(
    st.sampled_from(["station-post", "connector-post-status", "session-post", "rfid-verify"]),
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6),
)
def test_ledger_answers_any_body(call: str, body: dict[str, Any]) -> None:
    try:
        answer = EmpLedger(require_station=False).answer(call, body)
    except WireError as error:
        assert error.http_status == 400
    else:
        # No UID is known to an empty ledger: every valid rfid-verify is 191, the rest 0.
        assert answer.code == (191 if call == "rfid-verify" else 0)


@given(st.none() | st.text(max_size=60))
def test_authorization_check_takes_any_header(header: str | None) -> None:
    try:
        check_authorization(header, API_KEY)
    except WireError as error:
        assert (error.http_status, error.code) == (401, 210)
    else:
        assert header is not None
        assert header.strip().partition("=")[2].strip() == API_KEY


# -- EmpClient against a fake gateway endpoint ---------------------------------------------


@dataclass
class FakeGateway:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200
    reply: bytes = b'{"result": {"code": 0, "message": "Success."}}'

    def bodies(self) -> list[Any]:
        return [orjson.loads(body) for _, body in self.received]


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    fake = FakeGateway()

    async def handle(request: web.Request) -> web.Response:
        fake.received.append((dict(request.headers), await request.read()))
        return web.Response(status=fake.status, body=fake.reply, content_type="application/json")

    app = web.Application()
    app.router.add_post("/oioi", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}/oioi"
    yield fake
    await runner.cleanup()


async def test_client_session_start(gateway: FakeGateway) -> None:
    gateway.reply = (
        b'{"session-start": {"session-id": "s-1", "is-stoppable": true}, "result": {"code": 0}}'  # noqa: E501
    )
    async with EmpClient(gateway.url, API_KEY) as client:
        status, body = await client.session_start(EVSE, EVCO)
    assert (status, body["session-start"]["session-id"]) == (200, "s-1")
    headers, _ = gateway.received[0]
    assert headers["Authorization"] == f"key={API_KEY}"
    assert headers["Content-Type"] == "application/json"
    user = {"identifier-type": "evco-id", "identifier": EVCO}
    assert gateway.bodies() == [{"session-start": {"user": user, "connector-id": EVSE}}]


async def test_client_session_stop_with_and_without_session_id(gateway: FakeGateway) -> None:
    async with EmpClient(gateway.url, API_KEY) as client:
        await client.session_stop(EVSE, EVCO, "s-1")
        await client.session_stop(EVSE, EVCO)
    with_id, without_id = (b["session-stop"] for b in gateway.bodies())
    assert with_id["session-id"] == "s-1"
    assert "session-id" not in without_id
    assert without_id["connector-id"] == EVSE


async def test_client_rfid_post(gateway: FakeGateway) -> None:
    async with EmpClient(gateway.url, API_KEY) as client:
        status, body = await client.rfid_post(PARTNER, ["12345678", "04523022AA4881"])
    assert (status, body["result"]["code"]) == (200, 0)
    expected = {"rfids": ["12345678", "04523022AA4881"], "partner-identifier": PARTNER}
    assert gateway.bodies() == [{"rfid-post": expected}]


async def test_client_raw_and_non_json_answers(gateway: FakeGateway) -> None:
    gateway.status, gateway.reply = 500, b"Internal Server Error"
    async with EmpClient(gateway.url, API_KEY) as client:
        raw_status, raw_body = await client.raw(b"{broken", headers={"Authorization": None})
        status, body = await client.session_start(EVSE, EVCO)
    assert (raw_status, raw_body) == (500, b"Internal Server Error")
    assert (status, body) == (500, {"raw": "Internal Server Error"})
    headers, sent = gateway.received[0]
    assert sent == b"{broken"
    assert "Authorization" not in headers


async def test_client_outside_context_is_an_error() -> None:
    client = EmpClient("http://127.0.0.1:9/oioi", API_KEY)
    with pytest.raises(RuntimeError, match="async with"):
        await client.session_start(EVSE, EVCO)


def test_curl_examples_round_trip_through_the_shell() -> None:
    client = EmpClient("http://127.0.0.1:8090/oioi", "it's-a-key")
    argv = shlex.split(client.curl_session_stop(EVSE, EVCO, "s-1"))
    assert argv[:5] == ["curl", "-sS", "-X", "POST", "http://127.0.0.1:8090/oioi"]
    assert "Authorization: key=it's-a-key" in argv
    data = orjson.loads(argv[argv.index("--data") + 1])
    assert data["session-stop"]["session-id"] == "s-1"
    start = shlex.split(client.curl_session_start(EVSE, EVCO))
    assert orjson.loads(start[-1])["session-start"]["connector-id"] == EVSE
    assert curl_example("http://x/y", "k", {"a": {}}).endswith("""'{"a":{}}'""")
