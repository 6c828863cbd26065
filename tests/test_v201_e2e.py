"""OCPP 2.0.1 end to end: an `ocpp` v201 charger, the gateway, the sandbox EMP."""

from __future__ import annotations

from tests.charger201 import Memory, charger201, meter
from tests.conftest import Harness

EVSE = "DE*CPO*E1001*2"  # CP-BER-001 connector 2: 2.0.1 EVSE 2, connector 1
EVCO = "DE-8PS-C12345-6"
CP = "CP-BER-001"


async def test_remote_start_to_cdr(harness: Harness) -> None:
    emp = harness.emp
    memory = Memory()
    async with charger201(harness.ocpp_url, CP, memory) as cp:
        assert cp.boot_status == "Accepted"
        await cp.status(1, "Available")
        await cp.status(2, "Available")
        async with harness.client() as client:
            status, body = await client.session_start(EVSE, EVCO)
            assert status == 200 and body["result"]["code"] == 0, body
            session_id = body["session-start"]["session-id"]
            await emp.wait_for(memory.started.is_set, timeout=10)
            start = next(c for c in memory.commands if c[0] == "RequestStartTransaction")[1]
            assert start["evse_id"] == 2 and start["id_token"]["type"] == "Central"
            tx_id = f"TX-{start['remote_start_id']}"
            await cp.event(
                "Updated", tx_id, trigger="MeterValuePeriodic", evse=2,
                meter_value=meter(memory.meter_wh + 2500, 300),
            )  # fmt: skip
            status, body = await client.session_stop(EVSE, EVCO, session_id)
            assert status == 200 and body["result"]["code"] == 0, body
            await emp.wait_for(memory.ended.is_set, timeout=10)
        await emp.wait_for(lambda: session_id in emp.cdrs, timeout=10)
    assert ("RequestStopTransaction", {"transaction_id": tx_id}) in memory.commands
    cdr = emp.cdrs[session_id]
    assert cdr["connector-id"] == EVSE
    assert cdr["user"] == {"identifier-type": "evco-id", "identifier": EVCO}
    assert cdr["energy-consumed"] == 5.0
    tx = await harness.store.transaction_by_key(CP, tx_id)
    assert tx is not None and tx.connector == 2 and tx.stopped_at is not None
    steps = await harness.store.steps_of(CP, tx_id)
    assert [(s.kind.value, s.trigger) for s in steps] == [
        ("started", "RemoteStart"),
        ("updated", "MeterValuePeriodic"),
        ("ended", "RemoteStop"),
    ]
    assert steps[0].remote_id == start["remote_start_id"] and steps[2].reason == "Remote"
