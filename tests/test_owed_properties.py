"""The neutral payloads survive the outbox: what the core writes is what an adapter reads,
for any values (the outbox stores them as JSON)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.bridge.owed import COALESCED, CommandOutcome, Owed, SessionPhase, SessionUpdate

text = st.text(max_size=40)
energies = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(
    st.builds(
        SessionUpdate,
        session_id=text,
        evse_id=text,
        partner_identifier=text,
        user_kind=st.sampled_from(["rfid", "evco-id", "username"]),
        user_id=text,
        phase=st.sampled_from(SessionPhase),
        start=text,
        updated_at=text,
        stop=st.none() | text,
        energy_kwh=energies,
    )
)
def test_a_session_update_reads_back_as_written(update: SessionUpdate) -> None:
    stored = orjson.loads(orjson.dumps(update.to_dict()))
    assert SessionUpdate.from_dict(stored) == update


@given(st.builds(CommandOutcome, text, text, text, text, st.none() | text))
def test_a_command_outcome_reads_back_as_written(outcome: CommandOutcome) -> None:
    stored = orjson.loads(orjson.dumps(outcome.to_dict()))
    assert CommandOutcome.from_dict(stored) == outcome


def test_the_kinds_are_distinct_and_the_coalesced_ones_are_kinds() -> None:
    values = [k.value for k in Owed]
    assert len(set(values)) == len(values) == 6
    assert set(COALESCED) == {Owed.EVSE_STATUS, Owed.SESSION}
