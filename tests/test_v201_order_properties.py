"""Property: whatever order a 2.0.1 transaction's events arrive in, and however often each is
resent, the gateway keeps one transaction and queues exactly one CDR, for the EVSE its
Started names, with the energy of the Ended's reading less the Started's (by seqNo).

One gateway runs in its own thread for the whole module (as in test_reliability_fuzz), so
hypothesis drives a plain synchronous 2.0.1 websocket client; each example is a transaction
of its own (a fresh transactionId).
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from cpo_gateway.bridge.cdr import CDR_KIND, cdr_from_dict
from tests.conftest import PARTNER, examples
from tests.test_reliability_fuzz import Running, _errors, post

CP = "CP-BER-001"
UID = "04A1B2C3D4E5F6"
BEGAN = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
# Bounded: each example is up to a dozen round trips through the gateway, each a commit.
ORDERS = settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
_keys = itertools.count()


def _at(minute: int) -> str:
    return (BEGAN + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")


class Station:
    """A synchronous 2.0.1 charger: sends Calls, answers the server's, reads replies."""

    def __init__(self, url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(f"{url}/{CP}", subprotocols=[Subprotocol("ocpp2.0.1")])
        )
        boot = {"chargingStation": {"vendorName": "prop", "model": "x"}, "reason": "PowerUp"}
        assert self.call("BootNotification", boot)[0] == 3

    def call(self, action: str, payload: Any) -> list[Any]:
        unique_id = uuid.uuid4().hex
        self.ws.send(orjson.dumps([2, unique_id, action, payload]).decode())
        for _ in range(100):
            frame = orjson.loads(self.ws.recv(timeout=30))
            if frame[0] == 2:  # the server's own Calls (variables, local list, status)
                self.ws.send(orjson.dumps([3, frame[1], _answer(frame[2])]).decode())
            elif frame[1] == unique_id:
                return list(frame)
        raise AssertionError("no answer within 100 frames")

    def close(self) -> None:
        self._stack.close()


def _answer(action: str) -> dict[str, Any]:
    if action == "GetVariables":
        return {"getVariableResult": []}
    return {"status": "Accepted"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("order"))
    with structlog.testing.capture_logs() as events:
        running.events = events
        running.start()
        try:
            body = {"rfid-post": {"rfids": [UID], "partner-identifier": PARTNER}}
            status, answer = post(running.oioi_port, orjson.dumps(body))
            assert status == 200 and answer["result"]["code"] == 0, answer
            yield running
        finally:
            running.stop()
    assert running.gateway is not None and running.gateway.tasks.failures == 0
    assert _errors(events) == []


@pytest.fixture(scope="module")
def station(server: Running) -> Iterator[Station]:
    s = Station(server.ocpp_url)
    yield s
    s.close()


def _events(key: str, increments: list[int]) -> list[dict[str, Any]]:
    """Started (with the card and EVSE 2), an Updated per increment but the last, Ended."""
    wh = [10_000 + sum(increments[:i]) for i in range(len(increments) + 1)]
    out = []
    for seq, reading in enumerate(wh):
        kind = "Started" if seq == 0 else "Ended" if seq == len(wh) - 1 else "Updated"
        event: dict[str, Any] = {
            "eventType": kind, "timestamp": _at(seq), "seqNo": seq,
            "triggerReason": "Authorized" if seq == 0 else "MeterValuePeriodic",
            "transactionInfo": {"transactionId": key},
            "meterValue": [{"timestamp": _at(seq), "sampledValue": [
                {"value": reading, "measurand": "Energy.Active.Import.Register"}]}],
        }  # fmt: skip
        if kind == "Started":
            event["evse"] = {"id": 2, "connectorId": 1}
            event["idToken"] = {"idToken": UID, "type": "ISO14443"}
        if kind == "Ended":
            event["transactionInfo"]["stoppedReason"] = "Local"
        out.append(event)
    return out


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Energy increments (Wh per minute, within a 22 kW connector's reach) and the order the
    events arrive in: a permutation, some of them resent."""
    increments = draw(st.lists(st.integers(0, 300), min_size=1, max_size=4))
    count = len(increments) + 1
    order = draw(st.permutations(range(count)))
    resent = draw(st.lists(st.integers(0, count - 1), max_size=3))
    for seq in resent:
        order.insert(draw(st.integers(order.index(seq) + 1, len(order))), seq)
    return increments, order


@ORDERS
@given(arrivals())
def test_any_arrival_order_with_resends_gives_one_cdr_by_seq_no(
    server: Running, station: Station, case: tuple[list[int], list[int]]
) -> None:
    increments, order = case
    key = f"PROP-{next(_keys)}"
    events = _events(key, increments)
    for seq in order:
        reply = station.call("TransactionEvent", events[seq])
        assert reply[0] == 3, reply  # every one acknowledged, a resend too
    gateway = server.gateway
    assert gateway is not None
    tx = server._run(gateway.store.transaction_by_key(CP, key))
    assert tx is not None and tx.stopped_at == _at(len(increments))
    rows = server._run(
        gateway.store.db.all("SELECT payload FROM outbox WHERE kind = ? AND key = ?",
                             (CDR_KIND, tx.session_id))
    )  # fmt: skip
    assert len(rows) == 1, (order, rows)
    cdr = cdr_from_dict(orjson.loads(rows[0]["payload"]))
    assert cdr.evse_id == "DE*CPO*E1001*2"
    assert cdr.energy_kwh == round(sum(increments) / 1000, 3)
    assert cdr.user.identifier == UID
    assert cdr.session_interval.start.replace("+00:00", "Z") == _at(0)
