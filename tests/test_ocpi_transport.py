"""OCPI transport: the envelope, the Token header, request ids and routing headers, and the
middleware on a real aiohttp listener (port 0)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway import logs
from cpo_gateway.ocpi.transport import (
    CORRELATION_ID,
    FROM_COUNTRY,
    FROM_PARTY,
    REQUEST_ID,
    TO_COUNTRY,
    TO_PARTY,
    OcpiError,
    OcpiStatus,
    Party,
    RequestCounts,
    decode_auth_header,
    encode_token,
    envelope,
    middleware,
    module_of,
    ocpi_json_response,
    read_json,
    sane_id,
    token_candidates,
)

OURS = Party("DE", "CPO")
NOON = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
TOKENS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


# --- pure parts ------------------------------------------------------------------------------
def test_envelope_has_the_spec_fields_and_no_data_when_none() -> None:
    ok = envelope({"a": 1}, now=NOON)
    assert ok == {
        "data": {"a": 1},
        "status_code": 1000,
        "status_message": "Success",
        "timestamp": "2026-01-02T12:00:00Z",
    }
    refused = envelope(None, OcpiStatus.UNKNOWN_TOKEN, "uid: unknown", now=NOON)
    assert "data" not in refused and refused["status_code"] == 2004


def test_status_codes_are_the_specs() -> None:
    assert [int(s) for s in OcpiStatus] == [
        1000, 2000, 2001, 2002, 2003, 2004, 3000, 3001, 3002, 3003
    ]  # fmt: skip


def test_the_specs_example_header_decodes() -> None:
    # transport_and_format: "example-token" encoded with `echo` (a trailing newline).
    assert decode_auth_header("Token ZXhhbXBsZS10b2tlbgo=") == "example-token"
    assert encode_token("example-token") == "Token ZXhhbXBsZS10b2tlbg=="


def test_a_raw_token_is_tolerated_second() -> None:
    assert token_candidates("Token abc-123") == ("abc-123",)  # not base64: raw only
    # "abcd" is base64 of three bytes that are not printable: the raw value is the token.
    assert token_candidates("Token abcd") == ("abcd",)
    encoded = base64.b64encode(b"QUJD").decode()  # decodes to "QUJD", which itself decodes
    assert token_candidates(f"Token {encoded}") == ("QUJD", encoded)


@pytest.mark.parametrize("header", [None, "", "Bearer x", "Token", "Token   ", "key=abc"])
def test_a_missing_or_foreign_scheme_is_401(header: str | None) -> None:
    with pytest.raises(OcpiError) as caught:
        decode_auth_header(header)
    assert caught.value.http_status == 401 and "Authorization" in caught.value.message


@given(TOKENS.filter(lambda t: len(t) <= 64))
def test_encode_then_decode_is_the_token(token: str) -> None:
    assert decode_auth_header(encode_token(token)) == token


@given(st.text(max_size=200))
def test_any_header_yields_tokens_or_our_error(header: str) -> None:
    try:
        found = token_candidates(header)
    except OcpiError as exc:
        assert exc.http_status == 401
    else:
        assert found and all(0 < len(t) <= 64 and t.isprintable() for t in found)


@given(st.text(max_size=100))
def test_any_id_header_gives_a_sane_id(value: str) -> None:
    got = sane_id(value, lambda: "new")
    assert got == "new" or got == value.strip(" \t")
    assert len(got) <= 64 and "\n" not in got


@given(st.text(max_size=10), st.text(max_size=10))
def test_party_parse_accepts_or_names_the_field(country: str, party: str) -> None:
    try:
        parsed = Party.parse(country, party, "roles[0].")
    except OcpiError as exc:
        assert exc.message.startswith(("roles[0].country_code", "roles[0].party_id"))
    else:
        assert parsed.country_code == country.upper() and parsed.party_id == party.upper()


@pytest.mark.parametrize(
    ("path", "module"),
    [
        ("/ocpi/versions", "versions"),
        ("/ocpi/2.2.1", "versions"),
        ("/ocpi/2.2.1/credentials", "credentials"),
        ("/ocpi/2.2.1/locations/DE/CPO/L1", "locations"),
        ("/ocpi/2.2.1/tokens/NL/EMS/u1/authorize", "tokens"),
        ("/ocpi/whatever", "unknown"),
        ("/", "unknown"),
    ],
)
def test_module_of(path: str, module: str) -> None:
    assert module_of(path) == module


# --- on a listener ---------------------------------------------------------------------------
async def _locations(request: web.Request) -> web.Response:
    return ocpi_json_response([{"id": "L1"}])


async def _echo(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or "uid" not in body:
        raise OcpiError.missing("uid")
    if not isinstance(body["uid"], str):
        raise OcpiError.invalid("uid", "a string", body["uid"])
    return ocpi_json_response({"uid": body["uid"]})


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


class Listener:
    def __init__(self, runner: web.AppRunner, counts: RequestCounts) -> None:
        self.runner = runner
        self.counts = counts

    @property
    def url(self) -> str:
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}/ocpi"


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    counts = RequestCounts()
    app = web.Application(middlewares=[middleware(counts, OURS)], client_max_size=1024)
    app.router.add_get("/ocpi/2.2.1/locations", _locations)
    app.router.add_post("/ocpi/2.2.1/tokens", _echo)
    app.router.add_get("/ocpi/2.2.1/sessions", _boom)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield Listener(runner, counts)
    await runner.cleanup()


async def _call(
    method: str, url: str, **kwargs: object
) -> tuple[int, dict[str, object], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, **kwargs) as response,  # type: ignore[arg-type]
    ):
        body = orjson.loads(await response.read())
        return response.status, body, dict(response.headers)


async def test_success_echoes_ids_and_answers_routing(listener: Listener) -> None:
    headers = {
        REQUEST_ID: "req-1",
        CORRELATION_ID: "corr-1",
        FROM_COUNTRY: "NL",
        FROM_PARTY: "EMS",
        TO_COUNTRY: "DE",
        TO_PARTY: "CPO",
    }
    status, body, got = await _call("GET", listener.url + "/2.2.1/locations", headers=headers)
    assert status == 200 and body["status_code"] == 1000 and body["data"] == [{"id": "L1"}]
    assert got[REQUEST_ID] == "req-1" and got[CORRELATION_ID] == "corr-1"
    assert (got[TO_COUNTRY], got[TO_PARTY]) == ("NL", "EMS")
    assert (got[FROM_COUNTRY], got[FROM_PARTY]) == ("DE", "CPO")
    assert listener.counts.get("locations", 1000) == 1


async def test_each_request_is_logged_with_its_ids(listener: Listener) -> None:
    out = io.StringIO()
    logs.configure("info", "json", out)
    try:
        await _call(
            "GET",
            listener.url + "/2.2.1/locations",
            headers={REQUEST_ID: "req-log-1", CORRELATION_ID: "corr-log-1"},
        )
    finally:
        logs.configure("info", "auto")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    done = [e for e in lines if e["event"] == "ocpi.request"]
    assert len(done) == 1 and done[0]["request_id"] == "req-log-1"
    assert done[0]["correlation_id"] == "corr-log-1" and done[0]["module"] == "locations"
    assert done[0]["status_code"] == 1000 and done[0]["http_status"] == 200


async def test_a_missing_request_id_is_generated_and_reused_for_correlation(
    listener: Listener,
) -> None:
    _, _, got = await _call("GET", listener.url + "/2.2.1/locations")
    assert got[REQUEST_ID] and got[CORRELATION_ID] == got[REQUEST_ID]


async def test_another_to_party_is_refused(listener: Listener) -> None:
    headers = {TO_COUNTRY: "FR", TO_PARTY: "XYZ"}
    status, body, _ = await _call("GET", listener.url + "/2.2.1/locations", headers=headers)
    assert status == 403 and body["status_code"] == 2000
    assert "OCPI-to-country-code" in str(body["status_message"]) and "data" not in body


async def test_half_a_routing_pair_names_the_missing_header(listener: Listener) -> None:
    status, body, _ = await _call(
        "GET", listener.url + "/2.2.1/locations", headers={TO_COUNTRY: "DE"}
    )
    # valid JSON and an existing resource: the fault is in the OCPI code, HTTP stays 200
    assert status == 200 and body["status_code"] == 2001
    assert str(body["status_message"]).startswith(TO_PARTY)


@pytest.mark.parametrize(
    ("payload", "field", "http"),
    [
        (b"not json", "body", 400),
        (b"", "body", 400),
        (b"{}", "uid", 200),
        (b'{"uid": 5}', "uid", 200),
    ],
)
async def test_bad_bodies_get_2001_naming_the_field(
    listener: Listener, payload: bytes, field: str, http: int
) -> None:
    status, body, _ = await _call("POST", listener.url + "/2.2.1/tokens", data=payload)
    assert status == http and body["status_code"] == 2001
    assert str(body["status_message"]).startswith(field)
    assert listener.counts.get("tokens", 2001) == 1


async def test_http_errors_and_bugs_are_enveloped(listener: Listener) -> None:
    status, body, _ = await _call("GET", listener.url + "/2.2.1/nothing")
    assert status == 404 and body["status_code"] == 2000
    status, body, _ = await _call("DELETE", listener.url + "/2.2.1/locations")
    assert status == 405 and body["status_code"] == 2000
    status, body, _ = await _call("POST", listener.url + "/2.2.1/tokens", data=b"x" * 5000)
    assert status == 413 and body["status_code"] == 2000
    status, body, _ = await _call("GET", listener.url + "/2.2.1/sessions")
    assert status == 500 and body["status_code"] == 3000 and "a bug" not in str(body)
    # the listener keeps serving
    status, body, _ = await _call("GET", listener.url + "/2.2.1/locations")
    assert status == 200 and body["status_code"] == 1000
