"""The whole product on loopback: stations posted, a remote start, meter values, a remote
stop, and the CDR at the sandbox EMP."""

from __future__ import annotations

from tests.conftest import Harness

EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"


async def test_remote_start_to_cdr(harness: Harness) -> None:
    emp = harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3, timeout=10)
    async with harness.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.status(1, "Available")
        await cp.status(2, "Available")
        async with harness.client() as client:
            status, body = await client.session_start(EVSE, EVCO)
            assert status == 200 and body["result"]["code"] == 0, body
            session_id = body["session-start"]["session-id"]
            await emp.wait_for(lambda: cp.transaction_id(1) is not None, timeout=10)
            tx_id = cp.transaction_id(1)
            assert tx_id is not None
            await cp.meter_values(1, tx_id, 500)  # seconds of charging: plausible energy
            status, body = await client.session_stop(EVSE, EVCO, session_id)
            assert status == 200 and body["result"]["code"] == 0, body
        await emp.wait_for(lambda: session_id in emp.cdrs, timeout=10)
    cdr = emp.cdrs[session_id]
    assert cdr["connector-id"] == EVSE
    assert cdr["user"] == {"identifier-type": "evco-id", "identifier": EVCO}
    assert cdr["partner-identifier"] == "test-partner-identifier-0001"
    assert cdr["energy-consumed"] > 0
    assert cdr["session-interval"]["stop"]
