"""The benchmark keeps working: a few seconds of mixed load against the gateway and the
baseline, both in their own processes. Figures are printed, never asserted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.messages import Call, CallResult, validate_payload

from cpo_gateway.bench.charger import Payload
from cpo_gateway.bench.charger201 import LoadCharger201, transaction_event
from cpo_gateway.bench.claims_scenarios import outbox_claims
from cpo_gateway.bench.main import SCENARIOS, parser
from cpo_gateway.bench.ocpp_scenarios import Context, mixed, mixed201, ocpp_run
from cpo_gateway.bench.pg_server import find_bindir
from cpo_gateway.bench.schema_scenarios import mixed_checked, validators
from cpo_gateway.bench.wire import OP_PING, OP_TEXT, RawWebsocket
from tests.conftest import examples

COLUMNS = ("system", "calls", "calls/s", "p50 ms", "p99 ms", "max ms", "server CPU s",
           "peak RSS MB", "loadgen CPU s", "errors")  # fmt: skip


async def test_mixed_smoke_against_both_systems(tmp_path: Path) -> None:
    table = await mixed(Context(tmp_path, workers=1), n=5, seconds=2.0)
    print(table.render())
    assert table.columns == COLUMNS
    rows = {row[0]: dict(zip(table.columns, row, strict=True)) for row in table.rows}
    assert set(rows) == {"gateway", "baseline", "gateway/baseline"}
    for system in ("gateway", "baseline"):
        assert int(rows[system]["calls"]) > 0, table.render()
        assert rows[system]["errors"] == "0", table.render()
    assert rows["gateway/baseline"]["calls/s"].endswith("x")


async def test_mixed201_smoke_against_both_systems(tmp_path: Path) -> None:
    table = await mixed201(Context(tmp_path, workers=1), n=5, seconds=2.0)
    print(table.render())
    assert table.columns == COLUMNS
    rows = {row[0]: dict(zip(table.columns, row, strict=True)) for row in table.rows}
    assert set(rows) == {"gateway", "baseline", "gateway/baseline"}
    for system in ("gateway", "baseline"):
        assert int(rows[system]["calls"]) > 0, table.render()
        assert rows[system]["errors"] == "0", table.render()
    assert any(n.startswith("gateway: ") and "TransactionEvent" in n for n in table.notes)


async def test_mixed201_load_against_the_libraries_2_0_1_server(tmp_path: Path) -> None:
    figures = await ocpp_run(Context(tmp_path, workers=1), "baseline", "mixed201", 3, 1.5,
                             protocol="2.0.1", start_transaction=True)  # fmt: skip
    assert figures.load.errors == {}
    assert [r["failed"] for r in figures.load.ready] == [{}]
    assert set(figures.load.latencies) == {
        "Heartbeat", "Authorize", "StatusNotification", "TransactionEvent"
    }  # fmt: skip


async def test_the_2_0_1_load_station_speaks_schema_valid_2_0_1() -> None:
    station = LoadCharger201("BENCH-00001", "127.0.0.1", 9, "/ocpp")
    sent = [
        ("TransactionEvent", transaction_event("Started", "T-1", 0, 10, "Authorized")),
        ("TransactionEvent", transaction_event("Updated", "T-1", 1, 260, "MeterValuePeriodic")),
    ]
    for action, payload in sent:
        await validate_payload(Call("1", action, payload), "2.0.1")
    requests: dict[str, Payload] = {
        "GetVariables": {"getVariableData": [
            {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "ItemsPerMessage"}},
            {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Enabled"}},
        ]},
        "SendLocalList": {"versionNumber": 1, "updateType": "Full"},
        "GetLocalListVersion": {},
        "TriggerMessage": {"requestedMessage": "StatusNotification"},
        "RequestStartTransaction": {"idToken": {"idToken": "X", "type": "eMAID"},
                                    "remoteStartId": 1},
        "RequestStopTransaction": {"transactionId": "T-1"},
        "GetTransactionStatus": {"transactionId": "T-1"},
        "UnlockConnector": {"evseId": 1, "connectorId": 1},
        "ChangeAvailability": {"operationalStatus": "Operative"},
        "Reset": {"type": "OnIdle"},
    }  # fmt: skip
    for action, payload in requests.items():
        await validate_payload(Call("1", action, payload), "2.0.1")
        await validate_payload(CallResult("1", station.reply_to(action, payload), action), "2.0.1")
    reply = station.reply_to("GetVariables", requests["GetVariables"])
    assert [r["attributeValue"] for r in reply["getVariableResult"]] == ["1000", "true"]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.sampled_from(["GetVariables", "SetVariables", "GetTransactionStatus", "Reset", "X"]),
    st.dictionaries(
        st.sampled_from(["getVariableData", "setVariableData", "transactionId"]), _JSON
    ),
)
def test_the_2_0_1_load_station_answers_any_request_body(action: str, payload: Payload) -> None:
    reply = LoadCharger201("BENCH-00001", "127.0.0.1", 9, "/ocpp").reply_to(action, payload)
    assert isinstance(reply, dict) and reply


def test_cli_knows_every_scenario() -> None:
    args = parser().parse_args(["--scenario", "mixed201", "--quick", "--chargers", "5"])
    assert args.scenario == "mixed201" and args.quick and args.chargers == 5
    assert set(SCENARIOS) >= {"mixed", "mixed201", "idle10k", "burst", "storm", "authorize",
                              "rfid", "session-start", "outbox", "schemas", "profile3"}  # fmt: skip


async def test_schemas_smoke_runs_the_gateway_with_the_check_off_and_on(tmp_path: Path) -> None:
    table = await mixed_checked(Context(tmp_path, workers=1), n=5, seconds=2.0, rounds=1)
    print(table.render())
    runs = [dict(zip(table.columns, row, strict=True)) for row in table.rows[:2]]
    assert [r["schemas"] for r in runs] == ["off", "on"], table.render()
    for r in runs:
        assert int(r["calls"]) > 0 and r["errors"] == "0", table.render()
    assert table.rows[-1][0] == "on/off" and table.rows[-1][3].endswith("x")


def test_validator_figures_cover_the_mixed_load() -> None:
    table = validators(repeat_s=0.01)
    actions = {row[0] for row in table.rows}
    assert {"Heartbeat", "StatusNotification", "MeterValues", "Authorize"} <= actions
    assert all(row[3].endswith("x") for row in table.rows), table.render()


def _server_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x80 | opcode, n]) + payload
    if n < 1 << 16:
        return bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big") + payload
    return bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big") + payload


def _feed(chunks: list[bytes]) -> list[bytes]:
    """Bytes from a server, in arbitrary pieces, after a 101: the messages they carry."""

    async def run() -> list[bytes]:
        got: list[bytes] = []
        ws = RawWebsocket(got.append)
        ws.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        await asyncio.sleep(0)
        for chunk in chunks:
            ws.data_received(chunk)
        return got

    return asyncio.run(run())


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 7))
def test_frames_in_any_pieces_come_out_whole(messages: list[bytes], cut: int) -> None:
    wire = b"".join(_server_frame(OP_TEXT, m) for m in messages)
    chunks = [wire[i : i + cut] for i in range(0, len(wire), cut)]
    assert _feed(chunks) == messages


@settings(max_examples=examples(100), deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_server_bytes_never_raise(data: bytes) -> None:
    got = _feed([data, _server_frame(OP_PING, b"x")])
    assert all(isinstance(m, bytes) for m in got)


async def test_profile3_smoke_every_charger_is_accepted(tmp_path: Path) -> None:
    from cpo_gateway.bench.tls_scenarios import profile3

    table = await profile3(Context(tmp_path, workers=1), n=20, in_flight=10)
    print(table.render())
    row = dict(zip(table.columns, table.rows[0], strict=True))
    assert row["chargers"] == "20" and row["accepted"] == "20", table.render()
    assert row["refused"] == "0", table.render()


async def test_ocpi_registration_smoke_every_handshake_completes(tmp_path: Path) -> None:
    from cpo_gateway.bench.ocpi_scenarios import registration

    table = await registration(Context(tmp_path, workers=1), rounds=2, requests=20)
    rows = {r[0]: dict(zip(table.columns, r, strict=True)) for r in table.rows}
    assert [row["n"] for row in rows.values()] == ["2", "2", "20"], table.render()
    assert all(row["p50 ms"] != "-" for row in rows.values()), table.render()


async def test_outbox_claims_smoke_hands_every_row_out_once(tmp_path: Path) -> None:
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed: run scripts/services-setup")
    table = await outbox_claims(Context(tmp_path, workers=1), 300, (1, 3), None, batch=20)
    print(table.render())
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    assert [(r["backend"], r["claimers"]) for r in rows] == [
        ("postgresql", "1"),
        ("postgresql", "3"),
        ("sqlite", "1"),
    ]
    for r in rows:
        assert (r["duplicates"], r["left"]) == ("0", "0"), table.render()
        assert float(r["delivered rows/s"].replace(",", "")) > 0
