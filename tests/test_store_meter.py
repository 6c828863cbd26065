"""The meter fold done in SQL (group-committed MeterValues) agrees with the Python fold used
for StopTransaction, for any readings in any order."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.bridge.model import EnergySample
from cpo_gateway.store.db import _statements
from cpo_gateway.store.migrations import MIGRATIONS
from cpo_gateway.store.sessions import _METER_SQL, _merge_samples

COLUMNS = ("first_wh", "first_wh_at", "last_wh", "last_wh_at", "charge_start_at", "charge_stop_at")
samples = st.lists(
    st.builds(
        EnergySample,
        st.integers(0, 59).map(lambda m: f"2026-01-01T10:{m:02d}:00Z"),
        st.integers(0, 5000).map(float),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(first=samples, second=samples)
def test_sql_fold_matches_python_fold(
    first: list[EnergySample], second: list[EnergySample]
) -> None:
    db = sqlite3.connect(":memory:")
    for statement in _statements(MIGRATIONS[0]):
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
