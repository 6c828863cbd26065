"""OCPI commands end to end: the sandbox eMSP registered with a running gateway sends
START_SESSION / STOP_SESSION / UNLOCK_CONNECTOR / RESERVE_NOW / CANCEL_RESERVATION, simulated
1.6 and 2.0.1 chargers answer, and the CommandResult, the Session PUT/PATCH and the CDR POST
arrive at the sandbox's receivers through the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.bridge.model import User, UserKind
from cpo_gateway.config import load_config
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.charger201.simulator import SimCharger201
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from cpo_gateway.sim.ocpi_emsp.sandbox import Fault
from tests.conftest import Harness, running_gateway, write_config

OCPI_TABLE = """
[ocpi]
host = "127.0.0.1"
port = 0
country_code = "DE"
party_id = "CPO"
business_name = "Test CPO"
"""
CARD = "04A2B3C4"
LOCATION, EVSE = "DE-BER-ALEX-01", "DE*CPO*E1001*1"


def token(**over: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "EMS",
        "uid": CARD,
        "type": "RFID",
        "contract_id": "NL-EMS-C12345678-9",
        "issuer": "Sandbox eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2026-01-01T00:00:00Z",
        **over,
    }


async def until(check: Callable[[], object], what: str, rounds: int = 400) -> None:
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


def config_text(emsp: SandboxEmsp) -> str:
    return (
        f"""
[[emp]]
name = "emsp"
protocol = "ocpi"
versions_url = "{emsp.versions_url}"
token_a = "{emsp.token_a}"
request_timeout_s = 5.0
"""
        + OCPI_TABLE
    )


@pytest.fixture
async def emsp() -> AsyncIterator[SandboxEmsp]:
    async with SandboxEmsp() as sandbox:
        yield sandbox


@pytest.fixture
async def gw(tmp_path: Path, emp: SandboxEmp, emsp: SandboxEmsp) -> AsyncIterator[Harness]:
    cfg = load_config(write_config(tmp_path, emp_url=emp.url, extra=config_text(emsp)), {})
    async with running_gateway(Gateway(cfg), emp) as h:
        for _ in range(400):
            link = await h.store.link("emsp")
            if link is not None and link.state is LinkState.REGISTERED and emsp.registration:
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError("the gateway never registered with the sandbox eMSP")
        yield h


def received(emsp: SandboxEmsp, module: str, method: str | None = None) -> list[Any]:
    return [
        r for r in emsp.received if r.module == module and (method is None or r.method == method)
    ]


def start_body(evse_uid: str = EVSE, **over: Any) -> dict[str, Any]:
    return {"token": token(), "location_id": LOCATION, "evse_uid": evse_uid, **over}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_start_charge_stop_and_the_cdr_with_its_energy(
    gw: Harness, emsp: SandboxEmsp, version: str
) -> None:
    # The charger's clock runs an hour behind until the stop: a plausible 7.5 kWh hour.
    behind = [timedelta(hours=1)]

    def clock() -> datetime:
        return datetime.now(UTC) - behind[0]

    charger: SimCharger | SimCharger201
    if version == "1.6":
        charger = gw.charger("CP-BER-001", clock=clock)
    else:
        charger = SimCharger201("CP-BER-001", gw.ocpp_url, call_timeout=10, clock=clock)
    async with charger:
        await charger.connect()
        answer = await emsp.command("START_SESSION", start_body(), ref="start-1")
        assert answer["status_code"] == 1000, answer
        assert answer["data"]["result"] == "ACCEPTED" and answer["data"]["timeout"] > 0
        await until(lambda: emsp.results("start-1"), "the START_SESSION CommandResult")
        assert [r["result"] for r in emsp.results("start-1")] == ["ACCEPTED"]
        await until(lambda: charger.transaction_id(1) is not None, "the charger's transaction")
        await until(lambda: received(emsp, "sessions", "PUT"), "the Session PUT")
        session = received(emsp, "sessions", "PUT")[0].body
        assert session["status"] == "ACTIVE" and session["cdr_token"]["uid"] == CARD
        assert session["auth_method"] == "COMMAND"  # a remote start, whatever the token
        session_id = session["id"]
        assert received(emsp, "sessions", "PUT")[0].path.endswith(f"/DE/CPO/{session_id}")

        tx = charger.transaction_id(1)
        assert tx is not None
        behind[0] = timedelta(0)
        await charger.meter_values(1, tx, 7500)  # type: ignore[arg-type]
        stop = await emsp.command("STOP_SESSION", {"session_id": session_id}, ref="stop-1")
        assert stop["data"]["result"] == "ACCEPTED", stop
        await until(lambda: emsp.results("stop-1"), "the STOP_SESSION CommandResult")
        assert emsp.results("stop-1")[0]["result"] == "ACCEPTED"
        await until(lambda: session_id in emsp.cdrs, "the CDR POST")
    cdr = emsp.cdrs[session_id]
    assert cdr["total_energy"] == pytest.approx(7.5)
    assert cdr["cdr_token"]["uid"] == CARD
    assert cdr["auth_method"] == "COMMAND"
    assert len(received(emsp, "cdrs", "POST")) == 1
    final = [r.body for r in received(emsp, "sessions", "PUT")][-1]
    assert final["status"] == "COMPLETED" and final["kwh"] == pytest.approx(7.5)


async def test_refusals_at_once(gw: Harness, emsp: SandboxEmsp) -> None:
    # The charger is offline: REJECTED with a message, nothing owed later.
    offline = await emsp.command("START_SESSION", start_body(), ref="off")
    assert offline["data"]["result"] == "REJECTED"
    assert "offline" in offline["data"]["message"][0]["text"]
    # Another party's token.
    foreign = await emsp.command(
        "START_SESSION", start_body(token=token(party_id="XYZ")), ref="foreign"
    )
    assert foreign["data"]["result"] == "REJECTED"
    assert "token.country_code/party_id" in foreign["data"]["message"][0]["text"]
    # A session that does not exist, and one of another partner.
    unknown = await emsp.command("STOP_SESSION", {"session_id": "nope"}, ref="u1")
    assert unknown["data"]["result"] == "UNKNOWN_SESSION"
    async with gw.charger("CP-BER-001") as cp:
        await cp.connect()
        oioi = await gw.gateway.core.remote_start("sandbox", User(UserKind.RFID, CARD), EVSE)
        assert oioi.session_id is not None
        theirs = await emsp.command("STOP_SESSION", {"session_id": oioi.session_id}, ref="u2")
        assert theirs["data"]["result"] == "UNKNOWN_SESSION"
        # The EVSE is taken by the OIOI partner's session: REJECTED.
        busy = await emsp.command("START_SESSION", start_body(), ref="busy")
        assert busy["data"]["result"] == "REJECTED"
    # Unknown places are 2003; bad fields 2001 naming them.
    where = await emsp.command("START_SESSION", start_body(evse_uid="DE*CPO*E9999"), ref="x")
    assert where["status_code"] == 2003 and where["status_message"].startswith("evse_uid:")
    bad = await emsp.command("START_SESSION", {**start_body(), "location_id": 7}, ref="y")
    assert bad["status_code"] == 2001 and bad["status_message"].startswith("location_id:")
    for ref in ("off", "foreign", "u1", "u2", "busy", "x", "y"):
        assert emsp.results(ref) == []
    # Nothing accepted, so no result is owed: not one command-result row was written.
    rows = await gw.store.list_outbox(limit=500)
    assert [r for r in rows if r.kind == "command-result"] == []


async def test_one_of_two_partners_wins_the_evse(gw: Harness, emsp: SandboxEmsp) -> None:
    async with gw.charger("CP-BER-001") as cp:
        await cp.connect()
        oioi_start = gw.gateway.core.remote_start("sandbox", User(UserKind.RFID, "0A0B0C0D"), EVSE)
        ocpi_start = emsp.command("START_SESSION", start_body(), ref="race")
        oioi, ocpi = await asyncio.gather(oioi_start, ocpi_start)
        winners = [oioi.outcome.value == "ok", ocpi["data"]["result"] == "ACCEPTED"]
        assert sum(winners) == 1, (oioi, ocpi)
        starts = [a for a, _ in cp.received if a == "RemoteStartTransaction"]
        assert len(starts) == 1


async def test_unlock_and_reservations_on_a_16_charger(gw: Harness, emsp: SandboxEmsp) -> None:
    async with gw.charger("CP-BER-001") as cp:
        await cp.connect()
        unlock = await emsp.command(
            "UNLOCK_CONNECTOR",
            {"location_id": LOCATION, "evse_uid": EVSE, "connector_id": "1"},
            ref="unlock",
        )
        assert unlock["data"]["result"] == "ACCEPTED"
        await until(lambda: emsp.results("unlock"), "the unlock result")
        assert emsp.results("unlock")[0]["result"] == "ACCEPTED"
        assert ("UnlockConnector", {"connectorId": 1}) in cp.received

        reserve = {
            "token": token(),
            "expiry_date": "2030-01-01T12:00:00Z",
            "reservation_id": "R-1",
            "location_id": LOCATION,
            "evse_uid": EVSE,
        }
        assert (await emsp.command("RESERVE_NOW", reserve, ref="r1"))["data"][
            "result"
        ] == "ACCEPTED"
        await until(lambda: emsp.results("r1"), "the reservation result")
        assert emsp.results("r1")[0]["result"] == "ACCEPTED"
        sent = [p for a, p in cp.received if a == "ReserveNow"]
        assert sent[0]["idTag"] == CARD and sent[0]["connectorId"] == 1
        cancel = await emsp.command("CANCEL_RESERVATION", {"reservation_id": "R-1"}, ref="c1")
        assert cancel["data"]["result"] == "ACCEPTED"
        await until(lambda: emsp.results("c1"), "the cancel result")
        assert emsp.results("c1")[0]["result"] == "CANCELED_RESERVATION"
        assert [p for a, p in cp.received if a == "CancelReservation"] == [
            {"reservationId": sent[0]["reservationId"]}
        ]
        unknown = await emsp.command("CANCEL_RESERVATION", {"reservation_id": "R-2"}, ref="c2")
        assert unknown["data"]["result"] == "REJECTED"


async def test_reservations_need_the_profile(gw: Harness, emsp: SandboxEmsp) -> None:
    async with gw.charger("CP-BER-001", reservation_supported=False) as cp:
        await cp.connect()
        body = {
            "token": token(),
            "expiry_date": "2030-01-01T12:00:00Z",
            "reservation_id": "R-9",
            "location_id": LOCATION,
            "evse_uid": EVSE,
        }
        answer = await emsp.command("RESERVE_NOW", body, ref="r9")
        assert answer["data"]["result"] == "NOT_SUPPORTED"
    async with SimCharger201("CP-BER-001", gw.ocpp_url, call_timeout=10) as cp201:
        await cp201.connect()
        answer = await emsp.command("RESERVE_NOW", body, ref="r10")
        assert answer["data"]["result"] == "NOT_SUPPORTED"


async def test_an_outage_delays_cdrs_and_none_is_billed_twice(
    gw: Harness, emsp: SandboxEmsp
) -> None:
    behind = [timedelta(hours=1)]
    async with gw.charger("CP-BER-001", clock=lambda: datetime.now(UTC) - behind[0]) as cp:
        await cp.connect()
        for connector in (1, 2):
            body = start_body(evse_uid=f"DE*CPO*E1001*{connector}")
            answer = await emsp.command("START_SESSION", body, ref=f"s{connector}")
            assert answer["data"]["result"] == "ACCEPTED", answer
            await until(functools.partial(cp.transaction_id, connector), "a transaction")
        behind[0] = timedelta(0)
        for connector, fault in ((1, Fault.ERROR), (2, Fault.HTML)):
            emsp.fault = fault  # a 500, then a 200 with a proxy's HTML page
            tx = cp.transaction_id(connector)
            assert tx is not None
            await cp.meter_values(connector, tx, 2000 * connector)
            await cp.stop_transaction(tx, 2000 * connector)

        def cdr_rows() -> list[Any]:
            return [r for r in rows if r.emp == "emsp" and r.kind == "cdr"]

        rows = await gw.store.list_outbox(limit=500)
        await until(lambda: len(cdr_rows()) == 2, "two CDRs queued")
        sessions = sorted(r.key for r in cdr_rows())

        async def tried() -> bool:
            nonlocal rows
            rows = await gw.store.list_outbox(limit=500)
            return all(r.attempts > 0 for r in cdr_rows())

        for _ in range(400):
            if await tried():
                break
            await asyncio.sleep(0.025)
        assert all(r.state.value == "pending" for r in cdr_rows())  # kept, to be retried
        assert emsp.cdrs == {}  # a 500 and a 200 with HTML are not deliveries
        emsp.fault = Fault.NONE
        await gw.store.requeue(None, gw.gateway.clock())  # due now, not after the back-off
        await until(lambda: len(emsp.cdrs) == 2, "the CDRs after the outage")
    assert sorted(emsp.cdrs) == sessions
    energies = {k: v["total_energy"] for k, v in emsp.cdrs.items()}
    assert sorted(energies.values()) == [pytest.approx(2.0), pytest.approx(4.0)]
    posts = [r.body["id"] for r in received(emsp, "cdrs", "POST")]
    assert sorted(posts) == sessions  # each CDR accepted once: none billed twice


@pytest.mark.sqlite_only(
    reason="copies the SQLite file (sqlite3 backup) to stand for what a crash leaves"
)
async def test_a_crash_after_accepted_still_owes_the_result(
    tmp_path: Path, emp: SandboxEmp, emsp: SandboxEmsp
) -> None:
    """What is committed before the 200 ACCEPTED is enough: a copy of the database taken
    right after the answer (what a crash leaves) delivers the result at its deadline."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cfg = load_config(write_config(first, emp_url=emp.url, extra=config_text(emsp)), {})
    async with running_gateway(Gateway(cfg), emp) as h:
        for _ in range(400):
            link = await h.store.link("emsp")
            if link is not None and link.state is LinkState.REGISTERED and emsp.registration:
                break
            await asyncio.sleep(0.025)
        async with h.charger("CP-BER-001", remote_start="ignore") as cp:
            await cp.connect()
            answer = await emsp.command("START_SESSION", start_body(), ref="crash")
            assert answer["data"]["result"] == "ACCEPTED"
            timeout_s = answer["data"]["timeout"]
            crashed = second / "state"
            crashed.mkdir()
            with (
                contextlib.closing(sqlite3.connect(cfg.gateway.database)) as src,
                contextlib.closing(sqlite3.connect(crashed / cfg.gateway.database.name)) as dst,
            ):
                src.backup(dst)
    # The first gateway settled its own row with the charger's silence: not what is tested.
    emsp.received.clear()
    later = load_config(write_config(second, emp_url=emp.url, extra=config_text(emsp)), {})
    moved = Gateway(later, clock=lambda: time.time() + timeout_s + 1)
    async with running_gateway(moved, emp):
        await until(lambda: emsp.results("crash"), "the result owed by the crashed gateway")
    (result,) = emsp.results("crash")
    assert result["result"] == "TIMEOUT"


async def test_a_charger_that_refuses_gets_rejected_and_the_session_fails(
    gw: Harness, emsp: SandboxEmsp
) -> None:
    async with gw.charger("CP-BER-001", remote_start="reject") as cp:
        await cp.connect()
        answer = await emsp.command("START_SESSION", start_body(), ref="refused")
        assert answer["data"]["result"] == "ACCEPTED"  # it could be sent: the charger decides
        await until(lambda: emsp.results("refused"), "the result of the refused start")
    (result,) = emsp.results("refused")
    assert result["result"] == "REJECTED"
    assert "rejected" in result["message"][0]["text"]
    (session,) = await gw.store.list_sessions(limit=5)
    assert session.emp == "emsp" and session.state.value == "failed"


@pytest.mark.parametrize(
    "elsewhere",
    [
        "http://127.0.0.1:{other}/ocpi/emsp/2.2.1/commands/START_SESSION/r",  # another port
        "http://localhost:{port}/ocpi/emsp/2.2.1/commands/START_SESSION/r",  # another name
        "https://127.0.0.1/ocpi/emsp/2.2.1/commands/START_SESSION/r",  # port 443
        "http://127.0.0.2:{port}/x",
    ],
)
async def test_a_response_url_off_the_partners_registered_hosts_is_refused(
    gw: Harness, emsp: SandboxEmsp, elsewhere: str
) -> None:
    from urllib.parse import urlsplit

    reg = emsp.registration
    assert reg is not None
    port = urlsplit(emsp.versions_url).port
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        other = spare.getsockname()[1]
    url = elsewhere.format(port=port, other=other)
    async with gw.charger("CP-BER-001") as cp:
        await cp.connect()
        body = {"response_url": url, **start_body()}
        answer = await emsp.send(
            "POST", f"{reg.endpoints['commands']}/START_SESSION", reg.token_theirs, body
        )
        assert answer["status_code"] == 2001, answer
        assert answer["status_message"].startswith("response_url:")
        assert f"127.0.0.1:{port}" in answer["status_message"]  # what it may use instead
        # Nothing was done: the charger was asked nothing, no result is owed.
        assert [a for a, _ in cp.received if a == "RemoteStartTransaction"] == []
        rows = await gw.store.list_outbox(limit=500)
        assert [r for r in rows if r.kind == "command-result"] == []
        # Its own host is fine (the same command, answered as usual).
        ok = await emsp.command("START_SESSION", start_body(), ref="own-host")
        assert ok["status_code"] == 1000 and ok["data"]["result"] == "ACCEPTED", ok
