"""Bad input through the real running servers: random bytes, random JSON, valid calls with
fields removed, retyped or oversized, wrong encodings, OCPP frames for the wrong direction or
unknown actions. Never a crash, never a 5xx for the peer's fault, always the documented error,
and the process keeps serving. Oversized bodies and frames are refused without being read.

The gateway runs in its own thread and event loop for the whole module, so hypothesis drives
plain synchronous HTTP and websocket clients against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import INBOUND_KEY, OUTBOUND_KEY, PARTNER, examples, write_config

CP = "CP-HH-001"
MAX_BODY = 64 * 1024
# The gateway's thread draws from the global `random` (websockets' keepalive ping payloads,
# aiohttp's connector, the outbox back-off jitter) whenever its timers say so. Hypothesis
# takes any change of that state during a draw for a strategy using `random` and warns,
# which filterwarnings = error makes a failure: a thread's timing would turn a run red. The
# strategies here use no `random`; Hypothesis' own choices do not come from it.
GATEWAY_THREAD = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
pytestmark = GATEWAY_THREAD
FUZZ = settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | text
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
    max_leaves=20,
)
oversized = st.integers(2_000, 20_000).map(lambda n: "X" * n)
replacement = json_values | oversized


class Running:
    """A gateway and its sandbox EMP on a private event loop in a background thread."""

    def __init__(self, directory: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway-loop")
        self.directory = directory
        self.emp = SandboxEmp(api_key=OUTBOUND_KEY)
        self.gateway: Gateway | None = None
        self.events: list[Any] = []  # structlog events of the whole module

    def __repr__(self) -> str:
        return "<gateway under test>"

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        await self.emp.start()
        cfg = write_config(self.directory, emp_url=self.emp.url)
        text = cfg.read_text(encoding="utf-8").replace(
            "[oioi]", f"[oioi]\nmax_body_bytes = {MAX_BODY}"
        )
        cfg.write_text(text, encoding="utf-8")
        self.gateway = Gateway(load_config(cfg, {}))
        await self.gateway.start()

    async def _stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        await self.emp.stop()

    def start(self) -> None:
        self.thread.start()
        self._run(self._start())

    def stop(self) -> None:
        try:
            self._run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()

    @property
    def oioi_port(self) -> int:
        assert self.gateway is not None and self.gateway.oioi is not None
        return self.gateway.oioi.port

    @property
    def ocpp_url(self) -> str:
        assert self.gateway is not None and self.gateway.csms is not None
        return f"ws://127.0.0.1:{self.gateway.csms.port}/ocpp"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("fuzz"))
    with structlog.testing.capture_logs() as events:
        running.events = events
        running.start()
        try:
            yield running
        finally:
            running.stop()
    assert running.gateway is not None and running.gateway.tasks.failures == 0


def _errors(events: list[Any]) -> list[Any]:
    return [e for e in events if e.get("log_level") in ("error", "critical")]


# --- OIOI ------------------------------------------------------------------------------------
def post(
    port: int, body: bytes, *, key: str | None = INBOUND_KEY, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"key={key}"
    try:
        conn.request("POST", "/api/v4/request", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    parsed = orjson.loads(raw)
    assert isinstance(parsed, dict), raw[:200]
    return response.status, parsed


def assert_documented(status: int, body: dict[str, Any]) -> None:
    """A peer's mistake: 4xx with result.code 2xx (230 bad request), or a 200 business code."""
    assert status < 500, (status, body)
    code = body["result"]["code"]
    if status == 400 or status == 413:
        assert code == 230, body
    elif status == 401:
        assert code == 210, body
    elif status == 403:
        assert code == 220, body
    else:
        assert status == 200, (status, body)


def valid_calls() -> list[dict[str, Any]]:
    user = {"identifier-type": "evco-id", "identifier": "DE-8PS-C12345-6"}
    return [
        {"session-start": {"user": user, "connector-id": "DE*CPO*E3001*1"}},
        {"session-stop": {"user": user, "connector-id": "DE*CPO*E3001*1",
                          "session-id": str(uuid.uuid4())}},
        {"rfid-post": {"rfids": ["0A0B0C0D", "04523022AA4881"], "partner-identifier": PARTNER}},
    ]  # fmt: skip


@st.composite
def mutated_calls(draw: st.DrawFn) -> dict[str, Any]:
    call = draw(st.sampled_from(valid_calls()))
    name, inner = next(iter(call.items()))
    paths: list[tuple[str, ...]] = [(k,) for k in inner] + [
        (k, sub) for k, v in inner.items() if isinstance(v, dict) for sub in v
    ]
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        target = inner
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                break
            target = target[part]
        else:
            if draw(st.booleans()):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = draw(replacement)
    return {name: inner}


@FUZZ
@given(body=st.binary(max_size=2000))
def test_oioi_random_bytes(server: Running, body: bytes) -> None:
    running, events = server, server.events
    assert_documented(*post(running.oioi_port, body))
    assert not _errors(events)


@FUZZ
@given(value=json_values)
def test_oioi_random_json(server: Running, value: Any) -> None:
    running, events = server, server.events
    status, body = post(running.oioi_port, orjson.dumps(value))
    assert status == 400 and body["result"]["code"] == 230
    assert not _errors(events)


@FUZZ
@given(call=mutated_calls())
def test_oioi_valid_calls_with_fields_removed_retyped_or_oversized(
    server: Running, call: dict[str, Any]
) -> None:
    running, events = server, server.events
    assert_documented(*post(running.oioi_port, orjson.dumps(call)))
    assert not _errors(events)


@FUZZ
@given(
    call=st.sampled_from(valid_calls()),
    encoding=st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]),
    declare=st.booleans(),
)
def test_oioi_wrong_encodings(
    server: Running, call: dict[str, Any], encoding: str, declare: bool
) -> None:
    running, events = server, server.events
    # An unknown member, ignored when read as UTF-8, gives every body a non-ASCII character.
    name, inner = next(iter(call.items()))
    raw = orjson.dumps({name: {**inner, "x-note": "Grüße"}}).decode().encode(encoding)
    content_type = f"application/json; charset={encoding}" if declare else "application/json"
    status, body = post(running.oioi_port, raw, content_type=content_type)
    assert status == 400 and body["result"]["code"] == 230, body
    assert not _errors(events)


def test_oioi_oversized_body_is_refused_unread(server: Running) -> None:
    running = server
    with socket.create_connection(("127.0.0.1", running.oioi_port), timeout=10) as sock:
        # Declares a terabyte and sends none of it: the answer must come without reading.
        sock.sendall(
            b"POST /api/v4/request HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: key=" + INBOUND_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head[:100]
    status, body = post(running.oioi_port, b'{"rfid-post": ' + b" " * (MAX_BODY + 10) + b"}")
    assert status == 413 and body["result"]["code"] == 230
    conn = http.client.HTTPConnection("127.0.0.1", running.oioi_port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200, "the process keeps serving"
    conn.close()


# --- OCPP ------------------------------------------------------------------------------------
class Peer:
    """A synchronous charger: sends frames, answers the server's Calls, reads replies."""

    def __init__(self, url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(f"{url}/{CP}", subprotocols=[Subprotocol("ocpp1.6")])
        )
        self.call("BootNotification", {"chargePointVendor": "fuzz", "chargePointModel": "x"})

    def call(self, action: str, payload: Any) -> list[Any]:
        unique_id = uuid.uuid4().hex
        self.ws.send(orjson.dumps([2, unique_id, action, payload]).decode())
        return self.reply_to(unique_id)

    def reply_to(self, unique_id: str) -> list[Any]:
        """The answer to `unique_id`; everything else that arrives first is checked."""
        for _ in range(100):
            frame = orjson.loads(self.ws.recv(timeout=30))
            if frame[0] == 2:  # the server's own Calls (status trigger, local list)
                self.ws.send(orjson.dumps([3, frame[1], {"status": "Accepted"}]).decode())
            elif frame[1] == unique_id:
                return list(frame)
            else:
                assert frame[0] == 4, f"only CallErrors answer broken frames, got {frame}"
        raise AssertionError("no answer within 100 frames")

    def close(self) -> None:
        self._stack.close()

    def still_serving(self) -> None:
        assert self.call("Heartbeat", {})[0] == 3


@pytest.fixture(scope="module")
def peer(server: Running) -> Iterator[Peer]:
    p = Peer(server.ocpp_url)
    yield p
    p.close()


@FUZZ
@given(frame=st.binary(max_size=500) | text.map(str.encode), binary=st.booleans())
def test_ocpp_random_frames_never_close_the_connection(
    server: Running, peer: Peer, frame: bytes, binary: bool
) -> None:
    if binary:
        peer.ws.send(frame)  # a binary frame: OCPP-J uses text frames only
    try:
        peer.ws.send(frame.decode())
    except UnicodeDecodeError:
        peer.ws.send(frame)
    peer.still_serving()
    assert not _errors(server.events)


@FUZZ
@given(value=json_values)
def test_ocpp_random_json_frames(server: Running, peer: Peer, value: Any) -> None:
    peer.ws.send(orjson.dumps(value).decode())
    peer.still_serving()
    assert not _errors(server.events)


CHARGER_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("Heartbeat", {}),
    ("Authorize", {"idTag": "0A0B0C0D"}),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    ("StartTransaction", {"connectorId": 2, "idTag": "0A0B0C0D", "meterStart": 0,
                          "timestamp": "2024-05-01T10:00:00Z"}),
    ("MeterValues", {"connectorId": 2, "transactionId": 1, "meterValue": [
        {"timestamp": "2024-05-01T10:05:00Z", "sampledValue": [{"value": "100"}]}]}),
    ("StopTransaction", {"transactionId": 1, "meterStop": 500,
                         "timestamp": "2024-05-01T11:00:00Z"}),
    ("DataTransfer", {"vendorId": "fuzz"}),
]  # fmt: skip
WRONG_DIRECTION = ["RemoteStartTransaction", "RemoteStopTransaction", "Reset", "SendLocalList",
                   "ChangeAvailability", "TriggerMessage", "GetConfiguration", "UnlockConnector"]  # fmt: skip


@st.composite
def mutated_frames(draw: st.DrawFn) -> tuple[str, Any]:
    action, payload = draw(st.sampled_from(CHARGER_CALLS))
    payload = dict(payload)
    for key in draw(st.lists(st.sampled_from([*payload, "extra"]), max_size=3, unique=True)):
        if draw(st.booleans()):
            payload.pop(key, None)
        else:
            payload[key] = draw(replacement)
    new_action = draw(
        st.just(action) | st.sampled_from(WRONG_DIRECTION) | st.text(min_size=1, max_size=40)
    )
    return new_action, payload if draw(st.integers(0, 9)) else draw(json_values)


@FUZZ
@given(frame=mutated_frames())
def test_ocpp_calls_mutated_wrong_direction_or_unknown_get_an_answer(
    server: Running, peer: Peer, frame: tuple[str, Any]
) -> None:
    action, payload = frame
    reply = peer.call(action, payload)
    assert reply[0] in (3, 4), reply
    if reply[0] == 4:
        assert reply[2] in {
            "NotImplemented", "NotSupported", "FormationViolation", "FormatViolation",
            "ProtocolError", "PropertyConstraintViolation", "OccurenceConstraintViolation",
            "TypeConstraintViolation", "GenericError", "SecurityError",
        }, reply  # fmt: skip
    known = action in {a for a, _ in CHARGER_CALLS}
    if isinstance(payload, dict) and (action in WRONG_DIRECTION or not known):
        assert reply[0] == 4 and reply[2] in ("NotImplemented", "NotSupported"), reply
    peer.still_serving()
    assert not _errors(server.events)


def test_ocpp_oversized_frame_is_refused_unread(server: Running) -> None:
    running, events = server, server.events
    url = f"{running.ocpp_url}/CP-MUC-DC1"
    with connect(url, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        # A masked text frame header announcing 2**40 bytes, and no payload at all.
        ws.socket.sendall(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2**40) + b"\0\0\0\0")
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(10):
                ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    again = Peer(running.ocpp_url)  # the process keeps serving
    again.still_serving()
    again.close()
    assert not _errors(events)
