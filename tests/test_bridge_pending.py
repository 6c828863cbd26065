"""PendingStarts on its own: pending idTags, binding, expiry, failed starts recognised at
the charger that was asked until their expiry, the bound on what it remembers, restore."""

from __future__ import annotations

from cpo_gateway.bridge.pending import FAILED_CAP, FAILED_KEEP, PendingStarts
from cpo_gateway.bridge.ports import SessionOrigin, SessionRecord, SessionState


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _session(
    state: SessionState, *, id_tag: str | None, emp: str | None, expires_at: float | None
) -> SessionRecord:
    return SessionRecord(
        id=f"s-{id_tag}",
        evse_id="DE*CPO*E1",
        charge_point="CP1",
        connector=1,
        emp=emp,
        origin=SessionOrigin.REMOTE,
        user_kind="evco-id",
        user_id="DE-8AA-1A2B3C4D5-X",
        id_tag=id_tag,
        auth_status="Accepted",
        auth_path="remote",
        state=state,
        created_at="2026-01-01T10:00:00Z",
        expires_at=expires_at,
        transaction_id=None,
    )


def test_a_pending_idtag_is_known_until_bound() -> None:
    pending = PendingStarts(Clock())
    pending.add("TAG1", "emp-a")
    assert pending.emp_of("TAG1") == "emp-a"
    assert pending.emp_of("TAG2") is None
    assert len(pending) == 1
    pending.bind("TAG1")
    assert pending.emp_of("TAG1") is None
    assert len(pending) == 0
    pending.bind("TAG1")  # a replayed start binds nothing twice
    assert len(pending) == 0


def test_an_expired_start_is_forgotten_and_not_remembered_as_failed() -> None:
    pending = PendingStarts(Clock())
    pending.add("TAG1", "emp-a")
    pending.expire("TAG1")
    assert pending.emp_of("TAG1") is None
    assert pending.failed_emp("CP1", "TAG1") is None


def test_a_failed_start_is_recognised_at_its_charger_until_its_expiry() -> None:
    clock = Clock()
    pending = PendingStarts(clock)
    pending.add("TAG1", "emp-a")
    pending.fail("CP1", "TAG1", "emp-a", until=1090.0)
    assert pending.emp_of("TAG1") is None  # no longer accepted as a pending start
    assert pending.failed_emp("CP1", "TAG1") == "emp-a"
    assert pending.failed_emp("CP2", "TAG1") is None  # only at the charger that was asked
    clock.now = 1090.0
    assert pending.failed_emp("CP1", "TAG1") is None
    clock.now = 1000.0
    assert pending.failed_emp("CP1", "TAG1") is None  # forgotten once past, not revived


def test_failed_starts_are_bounded_expired_first_then_oldest() -> None:
    clock = Clock()
    pending = PendingStarts(clock)
    pending.fail("CP1", "OLD-EXPIRED", "e", until=1001.0)
    for n in range(FAILED_CAP - 1):
        pending.fail("CP1", f"T{n}", "e", until=5000.0)
    clock.now = 2000.0
    pending.fail("CP1", "NEWEST", "e", until=5000.0)
    assert pending.failed_emp("CP1", "NEWEST") == "e"
    assert pending.failed_emp("CP1", "OLD-EXPIRED") is None
    kept = sum(1 for n in range(FAILED_CAP - 1) if pending.failed_emp("CP1", f"T{n}"))
    assert kept == FAILED_KEEP
    assert pending.failed_emp("CP1", f"T{FAILED_CAP - 2}") == "e"  # the newest stay
    assert pending.failed_emp("CP1", "T0") is None  # the oldest went


def test_restore_learns_pending_and_failed_starts_again() -> None:
    clock = Clock()
    pending = PendingStarts(clock)
    pending.restore(
        [
            _session(SessionState.PENDING, id_tag="P1", emp="emp-a", expires_at=1090.0),
            _session(SessionState.PENDING, id_tag=None, emp="emp-a", expires_at=1090.0),
            _session(SessionState.PENDING, id_tag="P3", emp=None, expires_at=1090.0),
        ],
        [
            _session(SessionState.FAILED, id_tag="F1", emp="emp-b", expires_at=1050.0),
            _session(SessionState.FAILED, id_tag="F2", emp="emp-b", expires_at=None),
        ],
    )
    assert pending.emp_of("P1") == "emp-a"
    assert pending.emp_of("P3") is None
    assert len(pending) == 1
    assert pending.failed_emp("CP1", "F1") == "emp-b"
    assert pending.failed_emp("CP1", "F2") is None
    clock.now = 1050.0
    assert pending.failed_emp("CP1", "F1") is None
