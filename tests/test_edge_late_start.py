"""A remote start the EMP was told failed must not end in free energy: when the charger
starts it anyway (its RemoteStartTransaction answer came after the EMP's deadline, or the EMP
stopped it before it began), the gateway records the session for the EMP that asked, stops it
at once with RemoteStopTransaction and keeps its CDR locally."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import websockets
from websockets.typing import Subprotocol

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from tests.conftest import INBOUND_KEY, write_config

EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"


@dataclass
class Setup:
    gateway: Gateway
    emp: SandboxEmp
    config: Path
    offset: list[float]

    @property
    def ocpp_url(self) -> str:
        assert self.gateway.csms is not None
        return f"ws://127.0.0.1:{self.gateway.csms.port}/ocpp"

    def client(self) -> EmpClient:
        assert self.gateway.oioi is not None
        return EmpClient(f"http://127.0.0.1:{self.gateway.oioi.port}/api/v4/request", INBOUND_KEY)


@contextlib.asynccontextmanager
async def _setup(tmp_path: Path, deadline_s: float = 1.0) -> AsyncIterator[Setup]:
    async with SandboxEmp(api_key="test-outbound-key-0001", verify_codes={}) as emp:
        path = write_config(tmp_path, emp_url=emp.url, sessions="pending_start_timeout_s = 30.0")
        # A short EMP deadline: the charger's late answer is what this file is about.
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace("request_deadline_s = 4.0", f"request_deadline_s = {deadline_s}")
        )
        offset = [0.0]
        gateway = Gateway(load_config(path, {}), clock=lambda: time.time() + offset[0])
        await gateway.start()
        try:
            yield Setup(gateway, emp, path, offset)
        finally:
            await gateway.stop()
        assert gateway.tasks.failures == 0


async def _until(check: Callable[[], object], what: str) -> None:
    for _ in range(200):  # 10 s at most
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _remote_stops(cp: SimCharger) -> list[int]:
    return [int(p["transactionId"]) for a, p in cp.received if a == "RemoteStopTransaction"]


async def _session_of(setup: Setup, tx: int) -> dict[str, object]:
    row = await setup.gateway.db.one(
        "SELECT s.* FROM sessions s JOIN transactions t ON t.session_id = s.id WHERE t.id = ?",
        (tx,),
    )
    assert row is not None
    return dict(row)


async def _finished(setup: Setup, tx: int) -> dict[str, object]:
    for _ in range(200):
        session = await _session_of(setup, tx)
        if session["state"] == "finished":
            return session
        await asyncio.sleep(0.05)
    raise AssertionError("the late session never finished")


async def test_late_acceptance_after_timeout_is_stopped_and_not_billed(tmp_path: Path) -> None:
    async with (
        _setup(tmp_path) as setup,
        SimCharger("CP-BER-001", setup.ocpp_url, call_timeout=10, remote_start="ignore") as cp,
        setup.client() as client,
    ):
        await cp.connect()
        await cp.status(1, "Available")
        _, body = await client.session_start(EVSE, EVCO)
        assert body["result"]["code"] == 312  # the EMP was told it failed
        (asked,) = [p for a, p in cp.received if a == "RemoteStartTransaction"]
        # The charger accepts after all and starts with the remote idTag.
        cp.remote_start = "accept"
        tx = await cp.start_transaction(asked.get("connectorId", 1), asked["idTag"], 1000)
        assert tx > 0
        await _until(lambda: tx in _remote_stops(cp), "a RemoteStopTransaction")
        await _until(lambda: 1 not in cp.transactions, "the charger to stop")
        session = await _finished(setup, tx)
        assert (session["origin"], session["emp"], session["auth_status"]) == (
            "late",
            "sandbox",
            "Invalid",
        )
        assert "told it failed" in str(session["detail"])
        # The stop's CDR would have been written in the stop's own commit: there is none.
        posts = await setup.gateway.db.scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'cdr'")
        assert posts == 0 and not setup.emp.cdrs
        assert set(_remote_stops(cp)) == {tx}  # stops only for the late transaction
    out = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "sessions", "-c", str(setup.config), "list", "--tsv"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert any(f"finished\tlate\t{EVSE}" in line for line in out.splitlines()), out


async def test_start_after_the_emp_stopped_the_pending_start_is_stopped(tmp_path: Path) -> None:
    async with (
        _setup(tmp_path) as setup,
        SimCharger("CP-BER-001", setup.ocpp_url, call_timeout=10, remote_start="no-plug") as cp,
        setup.client() as client,
    ):
        await cp.connect()
        await cp.status(1, "Available")
        _, body = await client.session_start(EVSE, EVCO)
        assert body["result"]["code"] == 0
        session_id = body["session-start"]["session-id"]
        _, body = await client.session_stop(EVSE, EVCO, session_id)
        assert body["result"]["code"] == 0  # "the session had not begun"
        (asked,) = [p for a, p in cp.received if a == "RemoteStartTransaction"]
        tx = await cp.start_transaction(1, asked["idTag"], 0)
        await _until(lambda: tx in _remote_stops(cp), "a RemoteStopTransaction")
        session = await _finished(setup, tx)
        assert session["origin"] == "late" and session["id"] != session_id
        assert not setup.emp.cdrs


async def test_failed_start_tag_is_forgotten_after_its_original_expiry(tmp_path: Path) -> None:
    async with (
        _setup(tmp_path) as setup,
        SimCharger("CP-BER-001", setup.ocpp_url, call_timeout=10, remote_start="ignore") as cp,
        setup.client() as client,
    ):
        await cp.connect()
        await cp.status(1, "Available")
        _, body = await client.session_start(EVSE, EVCO)
        assert body["result"]["code"] == 312
        (asked,) = [p for a, p in cp.received if a == "RemoteStartTransaction"]
        setup.offset[0] += 31.0  # past the pending start's expiry (30 s)
        tx = await cp.start_transaction(1, asked["idTag"], 0)
        session = await _session_of(setup, tx)
        # Now an ordinary idTag nobody authorized: a card session, kept locally, not stopped.
        assert (session["origin"], session["emp"]) == ("card", None)
        await cp.stop_transaction(tx, 100)
        assert _remote_stops(cp) == []


async def test_failed_start_is_still_recognised_after_a_restart(tmp_path: Path) -> None:
    async with (
        _setup(tmp_path) as setup,
        SimCharger("CP-BER-001", setup.ocpp_url, call_timeout=10, remote_start="ignore") as cp,
        setup.client() as client,
    ):
        await cp.connect()
        await cp.status(1, "Available")
        _, body = await client.session_start(EVSE, EVCO)
        assert body["result"]["code"] == 312
        (asked,) = [p for a, p in cp.received if a == "RemoteStartTransaction"]
    cfg = load_config(setup.config, {})
    gateway = Gateway(cfg)
    await gateway.start()
    try:
        again = Setup(gateway, setup.emp, setup.config, [0.0])
        async with SimCharger("CP-BER-001", again.ocpp_url, call_timeout=10) as cp:
            await cp.connect()
            tx = await cp.start_transaction(1, asked["idTag"], 0)
            await _until(lambda: tx in _remote_stops(cp), "a RemoteStopTransaction")
            session = await _finished(again, tx)
            assert (session["origin"], session["emp"]) == ("late", "sandbox")
    finally:
        await gateway.stop()
    assert gateway.tasks.failures == 0


async def test_start_bound_before_a_late_answer_is_reported_as_started(tmp_path: Path) -> None:
    """The charger sends StartTransaction at once but answers RemoteStartTransaction after
    the deadline: the session runs and will be billed, so the EMP is told it started."""
    async with _setup(tmp_path, deadline_s=4.0) as setup, setup.client() as client:
        url = setup.ocpp_url + "/CP-BER-001"
        async with websockets.connect(url, subprotocols=[Subprotocol("ocpp1.6")]) as ws:

            async def call(uid: str, action: str, payload: dict[str, object]) -> object:
                await ws.send(orjson.dumps([2, uid, action, payload]).decode())
                for _ in range(100):
                    frame = orjson.loads(await ws.recv())
                    if frame[0] == 3 and frame[1] == uid:
                        return frame[2]
                raise AssertionError(f"no answer to {action}")

            await call(
                "s1",
                "StatusNotification",
                {"connectorId": 1, "status": "Available", "errorCode": "NoError"},
            )
            start = asyncio.create_task(client.session_start(EVSE, EVCO))
            for _ in range(100):
                frame = orjson.loads(await ws.recv())
                if frame[0] == 2 and frame[2] == "RemoteStartTransaction":
                    break
            else:
                raise AssertionError("no RemoteStartTransaction")
            conf = await call(
                "t1", "StartTransaction",
                {"connectorId": 1, "idTag": frame[3]["idTag"], "meterStart": 0, "timestamp": "2026-01-01T10:00:00Z"},
            )  # fmt: skip
            assert isinstance(conf, dict) and conf["idTagInfo"]["status"] == "Accepted"
            _, body = await start  # the RemoteStartTransaction is never answered
        assert body["result"]["code"] == 0
        session = await setup.gateway.store.session(body["session-start"]["session-id"])
        assert session is not None and session.state == "active"
        assert session.transaction_id == conf["transactionId"]


async def test_retry_at_the_same_charger_binds_and_a_retry_elsewhere_does_not_shield(
    tmp_path: Path,
) -> None:
    """The EVCO ID's idTag is the same in every attempt. A retry at the same charger that
    succeeds owns the start that follows; a retry at another charger does not make the first
    charger's late start billable."""
    async with (
        _setup(tmp_path) as setup,
        SimCharger("CP-BER-001", setup.ocpp_url, call_timeout=10, remote_start="ignore") as ber,
        SimCharger("CP-HH-001", setup.ocpp_url, call_timeout=10) as hh,
        setup.client() as client,
    ):
        for cp in (ber, hh):
            await cp.connect()
            await cp.status(1, "Available")
        _, body = await client.session_start(EVSE, EVCO)
        assert body["result"]["code"] == 312
        # A retry on another charger succeeds and begins there.
        _, body = await client.session_start("DE*CPO*E3001*1", EVCO)
        assert body["result"]["code"] == 0
        elsewhere = body["session-start"]["session-id"]
        await _until(lambda: hh.transaction_id(1) is not None, "the retry to begin")
        # Now the first charger begins the failed start after all.
        (asked,) = [p for a, p in ber.received if a == "RemoteStartTransaction"]
        tx = await ber.start_transaction(1, asked["idTag"], 0)
        await _until(lambda: tx in _remote_stops(ber), "a RemoteStopTransaction")
        assert (await _finished(setup, tx))["origin"] == "late"
        retried = await setup.gateway.store.session(elsewhere)
        assert retried is not None and retried.state == "active"
        # A retry at the first charger that it accepts binds the start that follows.
        ber.remote_start = "accept"
        # The charger reports Finishing, then Available, after its stop: until the gateway has
        # applied them the EVSE still reads Charging and a start is 320 (bounded wait).
        for _ in range(100):
            _, body = await client.session_start(EVSE, EVCO)
            if body["result"]["code"] != 320:
                break
            await asyncio.sleep(0.05)
        assert body["result"]["code"] == 0
        again = body["session-start"]["session-id"]
        await _until(lambda: ber.transaction_id(1) is not None, "the retry to begin")
        session = await setup.gateway.store.session(again)
        assert session is not None and session.state == "active"
        assert set(_remote_stops(ber)) == {tx}  # the bound retry is not stopped
        assert not _remote_stops(hh)
