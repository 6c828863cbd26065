"""Every log line of one OIOI request carries one request id, the core's lines included,
and the answer echoes it in `X-Request-ID`: the peer's when sane, else a new one."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway import logs
from cpo_gateway.oioi.request_id import MAX_LENGTH, request_id
from cpo_gateway.sim.emp.client import session_start_body
from tests.conftest import INBOUND_KEY, Harness

EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"
SANE = re.compile(r"[A-Za-z0-9._:-]+")
NEW = "generated-0001"


# --- the sanitiser ---------------------------------------------------------------------------
@given(st.text(max_size=200))
def test_any_header_gives_a_sane_id(header: str) -> None:
    rid = request_id(header, lambda: NEW)
    assert SANE.fullmatch(rid) and len(rid) <= MAX_LENGTH
    assert rid == NEW or rid == header.strip(" \t")


@given(st.text(alphabet="abcXYZ0189._:-", min_size=1, max_size=MAX_LENGTH))
def test_a_sane_header_is_kept_as_sent(header: str) -> None:
    assert request_id(header, lambda: NEW) == header
    assert request_id(f" {header}\t", lambda: NEW) == header


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "a" * (MAX_LENGTH + 1), "a b", "id\nforged=1", 'x"}', "é", "a/b", "\x00"],
)
def test_an_insane_header_is_replaced(header: str | None) -> None:
    assert request_id(header, lambda: NEW) == NEW


def test_a_generated_id_is_sane_and_new() -> None:
    first, second = request_id(None), request_id(None)
    assert first != second and SANE.fullmatch(first) and len(first) <= MAX_LENGTH


# --- end to end ----------------------------------------------------------------------------
@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure("info", "json", out)
    try:
        yield out
    finally:
        logs.configure("info", "auto")


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def _post(harness: Harness, header: str | None) -> tuple[str, dict[str, Any]]:
    headers = {"Authorization": f"key={INBOUND_KEY}", "Content-Type": "application/json"}
    if header is not None:
        headers["X-Request-ID"] = header
    body = orjson.dumps(session_start_body(EVSE, EVCO))
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(harness.oioi_url, data=body, headers=headers) as resp,
    ):
        return resp.headers["X-Request-ID"], await resp.json()


async def test_every_line_of_a_session_start_carries_its_request_id(
    harness: Harness, log_lines: io.StringIO
) -> None:
    await harness.emp.wait_for(lambda: len(harness.emp.calls("station-post")) == 3, timeout=10)
    async with harness.charger("CP-BER-001", remote_start="no-plug") as cp:
        await cp.connect()
        await cp.status(1, "Available")
        marker = logs.get("test")
        marker.info("test.before")
        echoed, body = await _post(harness, "emp-trace-42")
        marker.info("test.after")
    assert echoed == "emp-trace-42" and body["result"]["code"] == 0
    lines = _lines(log_lines)
    events = [e["event"] for e in lines]
    during = lines[events.index("test.before") + 1 : events.index("test.after")]
    assert {"oioi.request", "session.remote_start"} <= {e["event"] for e in during}
    # The core's lines (session.remote_start) and the OCPP side's are the request's too.
    assert [e for e in during if e.get("request_id") != "emp-trace-42"] == []
    after = lines[events.index("test.after")]
    assert "request_id" not in after  # the binding ends with the request


async def test_an_insane_id_is_replaced_and_every_answer_has_one(
    harness: Harness, log_lines: io.StringIO
) -> None:
    echoed, body = await _post(harness, "x" * 500)
    assert body["result"]["code"] == 310  # the charger is offline
    assert SANE.fullmatch(echoed) and len(echoed) <= MAX_LENGTH and echoed != "x" * 500
    other, _ = await _post(harness, None)
    assert SANE.fullmatch(other) and other != echoed
    ours = [e for e in _lines(log_lines) if e.get("request_id") == echoed]
    assert {e["event"] for e in ours} == {"oioi.request", "oioi.session_start"}
    # A refused request (wrong key) is answered with an id too.
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(
            harness.oioi_url,
            data=b"{}",
            headers={"Authorization": "key=wrong", "X-Request-ID": "r-1"},
        ) as resp,
    ):
        assert resp.status == 401 and resp.headers["X-Request-ID"] == "r-1"
    refused = [e for e in _lines(log_lines) if e.get("request_id") == "r-1"]
    assert [e["event"] for e in refused] == ["security.oioi_auth_failed", "oioi.refused"]
