"""An operator's remote start (the admin socket's RemoteStartTransaction) is numbered apart
from the core's: the core's remoteStartIds are session rowids (store/sessions.py claim_evse),
so an operator's number that equals one would bind the operator's start, begun after a
reconnect, to the EMP's stored start: its idTag, its user, its CDR.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.bridge.ports import SessionState
from cpo_gateway.csms import admin
from cpo_gateway.csms.connected201 import remote_start_ids
from tests.charger201 import Memory, charger201
from tests.conftest import Harness
from tests.test_v201_remote_ref import CP, _reconnect_quietly, _remote_start, _session_of

# 2024-01-01 (the numbering's epoch) plus a whole number of its former 2,000,000 s cycles:
# a gateway started then numbered its first operator start 1, the first session's rowid.
UNLUCKY_START = 1_704_067_200 + 40 * 2_000_000
INT32_MAX = 2**31 - 1


async def test_operator_start_after_a_reconnect_is_not_bound_to_an_emps_start(
    harness: Harness,
) -> None:
    memory = Memory(auto_start=False)
    async with charger201(harness.ocpp_url, CP, memory) as cp:
        await cp.status(1, "Available")
        await cp.status(2, "Available")
        session_id, ref = await _remote_start(harness, memory)  # the EMP's, on EVSE 2
        # The operator's numbering as a gateway started at UNLUCKY_START has it.
        harness.csms.registry.v201._next_remote_id = remote_start_ids(lambda: UNLUCKY_START)
        request = {
            "charge_point": CP,
            "action": "RemoteStartTransaction",
            "args": {"connectorId": 1, "idTag": "OPS-CARD-7"},
        }
        answer = await admin.execute(harness.csms.registry, request)
        assert answer["status"] == "accepted", answer
        sent = [kw for action, kw in memory.commands if action == "RequestStartTransaction"]
        assert len(sent) == 2, sent
        operator_id = int(sent[1]["remote_start_id"])
        assert operator_id != ref
    async with charger201(harness.ocpp_url, CP, memory, boot=False) as cp:
        await _reconnect_quietly(cp)
        await cp.event(
            "Started", "TX-OPS", trigger="RemoteStart", evse=1, remote_start_id=operator_id
        )
        begun = await _session_of(harness.store, "TX-OPS")
    assert begun.id != session_id
    assert begun.emp is None, begun  # not the EMP's customer's card (it was, under the old ids)
    pending = await harness.store.session(session_id)
    assert pending is not None and pending.state is SessionState.PENDING  # still the EMP's


@given(
    at=st.floats(min_value=1_704_067_200, max_value=4_102_444_800),  # 2024 to 2100
    count=st.integers(min_value=1, max_value=1000),
)
def test_operator_start_ids_fit_the_schema_and_stay_above_every_session_rowid(
    at: float, count: int
) -> None:
    next_id = remote_start_ids(lambda: at)
    ids = [next_id() for _ in range(count)]
    assert len(set(ids)) == count  # a run's first thousand are distinct
    # Session rowids stay far below 2**30 (a billion sessions); the schema's integer is int32.
    assert all(2**30 <= i <= INT32_MAX for i in ids), (min(ids), max(ids))
