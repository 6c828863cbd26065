"""The meter fold done in SQL (group-committed MeterValues) agrees with the Python fold used
for StopTransaction, for any readings in any order."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.bridge.model import EnergySample, SignedReading
from cpo_gateway.store.db import statements
from cpo_gateway.store.migrations import MIGRATIONS
from cpo_gateway.store.sessions import _METER_SQL, _merge_samples
from cpo_gateway.store.signed import record_signed_sync, signed_from_column
from tests.conftest import examples

COLUMNS = ("first_wh", "first_wh_at", "last_wh", "last_wh_at", "charge_start_at", "charge_stop_at")
samples = st.lists(
    st.builds(
        EnergySample,
        st.integers(0, 59).map(lambda m: f"2026-01-01T10:{m:02d}:00Z"),
        st.integers(0, 5000).map(float),
    ),
    max_size=12,
)


@settings(max_examples=examples(200), deadline=None)
@given(first=samples, second=samples)
def test_sql_fold_matches_python_fold(
    first: list[EnergySample], second: list[EnergySample]
) -> None:
    db = sqlite3.connect(":memory:")
    for statement in statements(MIGRATIONS[0]):
        db.execute(statement)
    db.execute(
        "INSERT INTO transactions (id, charge_point, connector, session_id) VALUES (1, 'c', 1, 's')"
    )
    python: dict[str, object] = dict.fromkeys(COLUMNS)
    # Two MeterValues messages: each is sorted by time before it is applied, as record_meter does.
    for batch in (first, second):
        for s in sorted(batch, key=lambda x: x.timestamp):
            db.execute(_METER_SQL, {"tx": 1, "cp": "c", "ts": s.timestamp, "wh": s.wh})
            python = _merge_samples(python, [s])
    row = db.execute(f"SELECT {', '.join(COLUMNS)} FROM transactions WHERE id = 1").fetchone()  # noqa: S608
    assert dict(zip(COLUMNS, row, strict=True)) == python


signed_samples = st.lists(
    st.builds(
        EnergySample,
        st.integers(0, 59).map(lambda m: f"2026-01-01T10:{m:02d}:00Z"),
        st.integers(0, 5000).map(float),
        st.builds(SignedReading, st.text(min_size=1, max_size=8), st.just("1"), st.just("OCMF"))
        | st.none(),
    ),
    max_size=12,
)


@settings(max_examples=examples(200), deadline=None)
@given(batches=st.lists(signed_samples, max_size=3))
def test_the_earliest_and_latest_signed_readings_are_kept_in_any_order(
    batches: list[list[EnergySample]],
) -> None:
    db = sqlite3.connect(":memory:")
    for migration in MIGRATIONS:
        for statement in statements(migration):
            db.execute(statement)
    db.execute(
        "INSERT INTO transactions (id, charge_point, connector, session_id) VALUES (1, 'c', 1, 's')"
    )
    for batch in batches:
        record_signed_sync(db, 1, batch)
    start, end = db.execute("SELECT signed_start, signed_end FROM transactions").fetchone()
    signed = sorted((s for b in batches for s in b if s.signed), key=lambda s: s.timestamp)
    if not signed:
        assert start is None and end is None
        return
    first, last = signed_from_column(start), signed_from_column(end)
    assert first is not None and last is not None
    # The first of the earliest timestamp, the last one applied of the latest.
    assert first.at == signed[0].timestamp and last.at == signed[-1].timestamp
    assert first.data in {s.signed.data for s in signed if s.timestamp == first.at and s.signed}
    assert last.data in {s.signed.data for s in signed if s.timestamp == last.at and s.signed}
