"""2.0.1 at the websocket: negotiation in our order, the RPC framework's "-1" answers and
2.0.1 error codes, and a mixed fleet (1.6 and 2.0.1) billing through one EMP."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from cpo_gateway.app import Gateway
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.charger201 import Memory, charger201, meter
from tests.conftest import Harness, running_gateway
from tests.test_csms_support import config

CP = "CP-BER-001"


async def test_2_0_1_is_chosen_when_both_are_offered(harness: Harness) -> None:
    offers = [Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")]
    async with connect(f"{harness.ocpp_url}/{CP}", subprotocols=offers) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
    async with connect(f"{harness.ocpp_url}/{CP}", subprotocols=[offers[0]]) as ws:
        assert ws.subprotocol == "ocpp1.6"


async def _answer(ws: ClientConnection) -> list[Any]:
    """The next answer to us, past the gateway's own Calls (a charger that did not boot is
    asked for its statuses and list)."""
    for _ in range(20):
        frame = orjson.loads(await ws.recv())
        if frame[0] != 2:
            return list(frame)
    raise AssertionError("no answer among 20 frames")


async def test_rpc_framework_errors_and_2_0_1_spelling(harness: Harness) -> None:
    url = f"{harness.ocpp_url}/{CP}"
    async with connect(url, subprotocols=[Subprotocol("ocpp2.0.1")]) as ws:
        await ws.send("this is not json")
        unreadable = await _answer(ws)
        await ws.send(orjson.dumps([2, 17, "Heartbeat", {}]).decode())  # id not a string
        bad_id = await _answer(ws)
        await ws.send(orjson.dumps([2, "a1", "Authorize", {}]).decode())
        missing = await _answer(ws)
        await ws.send(orjson.dumps([2, "a2", "Heartbeat", {}, "extra"]).decode())
        extra = await _answer(ws)
        status = {"timestamp": "2026-05-01T12:00:00Z", "connectorStatus": "Bogus"}
        await ws.send(
            orjson.dumps(
                [2, "a5", "StatusNotification", {**status, "evseId": 1, "connectorId": 1}]
            ).decode()
        )
        schema_enum = await _answer(ws)
        await ws.send(orjson.dumps([2, "a3", "Heartbeat", {}]).decode())
        still_up = await _answer(ws)
    assert unreadable[:3] == [4, "-1", "RpcFrameworkError"]
    assert bad_id[:3] == [4, "-1", "RpcFrameworkError"]
    assert missing[:3] == [4, "a1", "OccurrenceConstraintViolation"]
    assert missing[4] == {"field": "Authorize.idToken"}
    assert extra[:3] == [4, "a2", "FormatViolation"]
    assert schema_enum[:3] == [4, "a5", "PropertyConstraintViolation"]
    assert schema_enum[4] == {"field": "StatusNotification.connectorStatus"}
    assert still_up[0] == 3 and still_up[1] == "a3" and "currentTime" in still_up[2]


async def test_mixed_fleet_bills_through_one_emp(harness: Harness) -> None:
    emp = harness.emp
    memory = Memory(stop_delta_wh=1500)  # 1.5 kWh in 10 minutes: plausible at 11 kW
    async with (
        harness.charger("CP-MUC-DC1") as old,
        charger201(harness.ocpp_url, "CP-HH-001", memory) as new,
        harness.client() as client,
    ):
        await old.connect()
        await old.status(1, "Available")
        await new.status(1, "Available")
        status, body = await client.session_start("DE*CPO*E2001", "DE-8PS-C12345-6")
        assert status == 200 and body["result"]["code"] == 0, body
        old_session = body["session-start"]["session-id"]
        status, body = await client.session_start("DE*CPO*E3001*1", "DE-8PS-C99999-1")
        assert status == 200 and body["result"]["code"] == 0, body
        new_session = body["session-start"]["session-id"]
        await emp.wait_for(lambda: old.transaction_id(1) is not None, timeout=10)
        await emp.wait_for(memory.started.is_set, timeout=10)
        tx16 = old.transaction_id(1)
        assert tx16 is not None
        await old.meter_values(1, tx16, 500)
        key = next(iter(memory.transactions))
        await new.event("Updated", key, trigger="MeterValuePeriodic", meter_value=meter(2000, 300))
        for evse, evco, session in (
            ("DE*CPO*E2001", "DE-8PS-C12345-6", old_session),
            ("DE*CPO*E3001*1", "DE-8PS-C99999-1", new_session),
        ):
            status, body = await client.session_stop(evse, evco, session)
            assert status == 200 and body["result"]["code"] == 0, body
        await emp.wait_for(lambda: {old_session, new_session} <= set(emp.cdrs), timeout=10)
    assert emp.cdrs[old_session]["connector-id"] == "DE*CPO*E2001"
    assert emp.cdrs[new_session]["connector-id"] == "DE*CPO*E3001*1"
    assert emp.cdrs[new_session]["energy-consumed"] == 1.5


async def test_2_0_1_answers_carry_the_gateways_injected_clock(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    """The 2.0.1 answers' times come from the gateway's clock, as the 1.6 ones do: a gateway
    on a fixed clock answers with that time, whatever the machine's clock says."""
    fixed = 1_767_268_800.0  # 2026-01-01T12:00:00Z
    gateway = Gateway(config(tmp_path, emp), clock=lambda: fixed)
    boot = {"reason": "PowerUp", "chargingStation": {"model": "W1", "vendorName": "ACME"}}
    token = {"idToken": {"idToken": "04A2B3C4", "type": "ISO14443"}}
    async with running_gateway(gateway, emp) as harness:
        url = f"{harness.ocpp_url}/{CP}"
        async with connect(url, subprotocols=[Subprotocol("ocpp2.0.1")]) as ws:
            await ws.send(orjson.dumps([2, "b1", "BootNotification", boot]).decode())
            booted = await _answer(ws)
            await ws.send(orjson.dumps([2, "b2", "Heartbeat", {}]).decode())
            beat = await _answer(ws)
            await ws.send(orjson.dumps([2, "b3", "Authorize", token]).decode())
            authorized = await _answer(ws)
    assert booted[2]["currentTime"] == "2026-01-01T12:00:00Z"
    assert beat[2]["currentTime"] == "2026-01-01T12:00:00Z"
    expiry = fixed + gateway.config.sessions.id_tag_expiry_s
    cached = datetime.fromisoformat(authorized[2]["idTokenInfo"]["cacheExpiryDateTime"])
    assert cached.timestamp() == expiry
