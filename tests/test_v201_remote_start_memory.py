"""A 2.0.1 charger that accepts remote starts and never begins them (no car came) costs the
connection a bounded memory: only the newest starts stay bound by their remoteStartId on
the connection; a core start still binds by its stored ref after that, and the newest
operator start by its number."""

from __future__ import annotations

from cpo_gateway.csms import admin
from cpo_gateway.csms.connected201 import MAX_REMOTE_STARTS
from tests.charger201 import Memory, charger201
from tests.conftest import Harness
from tests.test_v201_remote_ref import CP, _remote_start, _session_of, _started

STARTS = MAX_REMOTE_STARTS + 50  # bounded: the load loop below runs this many times


async def test_remote_starts_never_begun_keep_a_bounded_map(harness: Harness) -> None:
    memory = Memory(auto_start=False)
    async with charger201(harness.ocpp_url, CP, memory) as cp:
        await cp.status(1, "Available")
        await cp.status(2, "Available")
        session_id, ref = await _remote_start(harness, memory)  # the EMP's, first of all
        for i in range(STARTS):
            request = {
                "charge_point": CP,
                "action": "RemoteStartTransaction",
                "args": {"connectorId": 1, "idTag": f"OPS-{i}"},
            }
            answer = await admin.execute(harness.csms.registry, request)
            assert answer["status"] == "accepted", answer
        conn = harness.csms.registry.connections[CP]
        assert len(conn.remote_starts) == MAX_REMOTE_STARTS
        newest = int(memory.commands[-1][1]["remote_start_id"])
        assert conn.remote_starts[newest] == f"OPS-{STARTS - 1}"
        # The EMP's start, long out of the map, still binds by its stored ref.
        await _started(cp, "TX-EMP", ref)
        assert (await _session_of(harness.store, "TX-EMP")).id == session_id
