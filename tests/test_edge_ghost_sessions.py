"""An open session the charger no longer knows (it reports Available, sends no meter values)
is reconciled after a grace: the charger is asked first, then the session is closed with a
CDR of the energy known, and a late real stop for it is a duplicate. Ops can close a session
from the CLI while the gateway runs.

Real gateway, real SimCharger over a websocket, real sandbox EMP, real SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from websockets import Subprotocol

from cpo_gateway import cli
from cpo_gateway.app import Gateway
from cpo_gateway.config import ConfigError, load_config
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.store import Store
from tests.conftest import Harness, running_gateway, write_config

CP = "CP-BER-001"
EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"
EVCO_2 = "DE*ABC*C65432*1"


@contextlib.asynccontextmanager
async def _gateway(
    tmp_path: Path, emp: SandboxEmp, sessions: str = ""
) -> AsyncIterator[tuple[Harness, Path]]:
    path = write_config(tmp_path, emp_url=emp.url, sessions=sessions)
    async with running_gateway(Gateway(load_config(path, {})), emp) as h:
        yield h, path


async def _session_state(store: Store, session_id: str, want: str, rounds: int = 300) -> str:
    """Poll the stored session until it reaches `want` (bounded); its last state."""
    state = ""
    for _ in range(rounds):
        session = await store.session(session_id)
        state = session.state if session else ""
        if state == want:
            break
        await asyncio.sleep(0.05)
    return state


async def _start(h: Harness, cp: SimCharger, evco: str = EVCO) -> tuple[str, int]:
    async with h.client() as client:
        _, body = await client.session_start(EVSE, evco)
    assert body["result"]["code"] == 0, body
    await h.emp.wait_for(lambda: cp.transaction_id(1) is not None, timeout=10)
    tx = cp.transaction_id(1)
    assert tx is not None
    return str(body["session-start"]["session-id"]), tx


async def _cdr_rows(h: Harness, session_id: str) -> int:
    return int(
        await h.gateway.db.scalar(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'cdr' AND key = ?", (session_id,)
        )
    )


async def test_ghost_session_is_reconciled_once_and_the_evse_is_free_again(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with (
        _gateway(tmp_path, emp, "ghost_grace_s = 0.5") as (h, _),
        h.charger(CP) as cp,
        h.client() as client,
    ):
        await cp.connect()
        await cp.status(1, "Available")
        session_id, tx = await _start(h, cp)
        # Within what a 22 kW connector may deliver in seconds (CDRs are checked for it).
        await cp.meter_values(1, tx, 800)
        # The charger drops its transaction without a stop and reports the connector free.
        cp.transactions.pop(1)
        await cp.status(1, "Available")
        await emp.wait_for(lambda: session_id in emp.cdrs, timeout=15)
        cdr = emp.cdrs[session_id]
        assert cdr["energy-consumed"] == 0.8
        session = await h.store.session(session_id)
        assert session is not None and session.state == "finished"
        detail = await h.gateway.db.scalar(
            "SELECT detail FROM sessions WHERE id = ?", (session_id,)
        )
        assert str(detail).startswith("reconciled: ")
        # It was asked first: what it meters on the connector, then whether it knows the
        # transaction (it rejected the stop).
        asked = [(a, p) for a, p in cp.received if a in ("TriggerMessage", "RemoteStopTransaction")]
        assert ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}) in asked
        assert ("RemoteStopTransaction", {"transactionId": tx}) in asked
        # The EVSE takes a new session.
        _, body = await client.session_start(EVSE, EVCO_2)
        assert body["result"]["code"] == 0, body
        # The charger's real stop, replayed after a reconnect, is a duplicate: answered, no
        # second CDR.
        posts = len(emp.calls("session-post"))
        conf = await cp.stop_transaction(tx, 2100, transaction_data=False)
        assert conf == {}
        assert await _cdr_rows(h, session_id) == 1
        core = h.gateway.core
        assert core is not None
        await core.delivery.tick()
        assert len(emp.calls("session-post")) == posts
        assert emp.cdrs[session_id]["energy-consumed"] == 0.8


async def test_charger_that_still_meters_its_transaction_keeps_the_session(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with _gateway(tmp_path, emp, "ghost_grace_s = 0.5") as (h, _), h.charger(CP) as cp:
        await cp.connect()
        await cp.status(1, "Available")
        session_id, tx = await _start(h, cp)
        # A charger that reports Available while its transaction runs (a firmware quirk):
        # asked, it meters the transaction, so the session is kept.
        await cp.status(1, "Available")

        def probes() -> int:
            return sum(
                1
                for a, p in cp.received
                if a == "TriggerMessage" and p.get("requestedMessage") == "MeterValues"
            )

        await emp.wait_for(lambda: probes() >= 2, timeout=15)
        assert await _session_state(h.store, session_id, "active", rounds=1) == "active"
        assert not any(a == "RemoteStopTransaction" for a, _ in cp.received)
        assert session_id not in emp.cdrs


async def test_sessions_close_from_the_cli_while_the_gateway_runs(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with _gateway(tmp_path, emp) as (h, path), h.charger(CP) as cp:
        await cp.connect()
        await cp.status(1, "Available")
        session_id, tx = await _start(h, cp)
        await cp.meter_values(1, tx, 900)
        argv = ["sessions", "close", session_id, "--reason", "stuck after a firmware update"]
        code = await asyncio.to_thread(cli.main, [*argv, "-c", str(path)])
        assert code == 0
        assert await _session_state(h.store, session_id, "finished", rounds=1) == "finished"
        detail = await h.gateway.db.scalar(
            "SELECT detail FROM sessions WHERE id = ?", (session_id,)
        )
        assert "stuck after a firmware update" in str(detail)
        # The CDR was written with the close; the running gateway delivers it.
        await emp.wait_for(lambda: session_id in emp.cdrs, timeout=15)
        assert emp.cdrs[session_id]["energy-consumed"] == 0.9
        # Closing again changes nothing and says so.
        code = await asyncio.to_thread(cli.main, [*argv, "-c", str(path)])
        assert code == 1
        assert await _cdr_rows(h, session_id) == 1
        code = await asyncio.to_thread(
            cli.main, ["sessions", "close", "no-such-session", "--reason", "x", "-c", str(path)]
        )
        assert code == 1


def test_ghost_grace_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, sessions="ghost_grace_s = 0"), {})
    assert any("sessions.ghost_grace_s" in p for p in err.value.problems)


async def test_a_stop_accepted_but_never_sent_does_not_keep_the_session_open(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    """A charger that cannot meter on request and accepts a stop it never sends: the
    session is closed one grace after the accepted stop."""
    emp.verify_codes = {"AABBCCDD": 0}  # the EMP accepts the card online
    async with _gateway(tmp_path, emp, "ghost_grace_s = 0.5") as (h, _):
        url = f"{h.ocpp_url}/{CP}"
        async with websockets.connect(url, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
            answered: list[str] = []

            async def call(uid: str, action: str, payload: dict[str, object]) -> Any:
                await ws.send(orjson.dumps([2, uid, action, payload]).decode())
                for _ in range(100):
                    frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                    if frame[0] == 3 and frame[1] == uid:
                        return frame[2]
                    if frame[0] == 2:
                        await answer(frame)
                raise AssertionError(f"no answer to {action}")

            async def answer(frame: list[Any]) -> None:
                action = frame[2]
                status = "Accepted" if action == "RemoteStopTransaction" else "Rejected"
                answered.append(action)
                await ws.send(orjson.dumps([3, frame[1], {"status": status}]).decode())

            await call("b", "BootNotification", {"chargePointVendor": "v", "chargePointModel": "m"})
            start = {"connectorId": 1, "idTag": "AABBCCDD", "meterStart": 100, "timestamp": _now()}
            conf = await call("s", "StartTransaction", start)
            tx = int(conf["transactionId"])
            reading = [{"timestamp": _now(), "sampledValue": [{"value": "900"}]}]
            await call(
                "m", "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": reading}
            )
            status = {"connectorId": 1, "status": "Available", "errorCode": "NoError"}
            await call("a", "StatusNotification", {**status, "timestamp": _now()})
            session_id = str(
                await h.gateway.db.scalar("SELECT session_id FROM transactions WHERE id = ?", (tx,))
            )
            for _ in range(300):  # answer what the gateway asks until it gives up on the stop
                session = await h.store.session(session_id)
                if session is not None and session.state == "finished":
                    break
                with contextlib.suppress(TimeoutError):
                    frame = orjson.loads(await asyncio.wait_for(ws.recv(), 0.05))
                    if frame[0] == 2:
                        await answer(frame)
            assert "RemoteStopTransaction" in answered
            detail = await h.gateway.db.scalar(
                "SELECT detail FROM sessions WHERE id = ?", (session_id,)
            )
            assert "accepted a stop" in str(detail)
            assert await _session_state(h.store, session_id, "finished", rounds=1) == "finished"
            await emp.wait_for(lambda: session_id in emp.cdrs, timeout=15)
            assert emp.cdrs[session_id]["energy-consumed"] == 0.8
            row = await h.gateway.db.one(
                "SELECT meter_stop_wh, stopped_at FROM transactions WHERE id = ?", (tx,)
            )
            assert row is not None and (row[0], row[1]) == (900, reading[0]["timestamp"])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
