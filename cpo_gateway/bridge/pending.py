"""The idTags of remote starts, from the EMP's request until the charger begins them.

One object owns them so their rules live in one place: the authorization chain accepts the
idTag of a pending start (bridge/auth.py), the charger's StartTransaction binds it
(bridge/transactions.py), and a start the EMP was told failed stays recognisable at the
charger that was asked until the pending start's own expiry, so a charger that begins it
late is stopped rather than judged as a card (bridge/remote.py). After a restart both are
learnt again from the stored sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cpo_gateway.bridge.ports import SessionRecord

# Failed starts remembered at most (each lives until its pending start's expiry anyway):
# past the cap, the expired ones go first, then the oldest, down to FAILED_KEEP.
FAILED_CAP = 10_000
FAILED_KEEP = 9_000


class PendingStarts:
    """Pending remote-start idTags (idTag -> EMP) and recently failed ones ((charge point,
    idTag) -> EMP, until when)."""

    __slots__ = ("_clock", "_failed", "_pending")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._pending: dict[str, str] = {}
        self._failed: dict[tuple[str, str], tuple[str, float]] = {}

    def __len__(self) -> int:
        """Pending idTags."""
        return len(self._pending)

    def add(self, id_tag: str, emp: str) -> None:
        """A remote start for `emp` was stored and its command is on its way."""
        self._pending[id_tag] = emp

    def emp_of(self, id_tag: str) -> str | None:
        """The EMP of the pending remote start with this idTag, if one is pending."""
        return self._pending.get(id_tag)

    def bind(self, id_tag: str) -> None:
        """The charger began the start (its StartTransaction is committed): no longer pending."""
        self._pending.pop(id_tag, None)

    def expire(self, id_tag: str) -> None:
        """The pending start ended without beginning (its expiry passed)."""
        self._pending.pop(id_tag, None)

    def fail(self, charge_point: str, id_tag: str, emp: str, until: float) -> None:
        """The EMP was told this start failed: no longer pending, but recognisable at the
        charger that was asked until `until` (the pending start's own expiry)."""
        self._pending.pop(id_tag, None)
        self._remember_failed(charge_point, id_tag, emp, until)

    def failed_emp(self, charge_point: str, id_tag: str) -> str | None:
        """The EMP told that a remote start with this idTag at this charger failed, while
        that is recent enough to matter."""
        entry = self._failed.get((charge_point, id_tag))
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._failed[(charge_point, id_tag)]
            return None
        return entry[0]

    def restore(self, pending: Iterable[SessionRecord], failed: Iterable[SessionRecord]) -> None:
        """Learn again, after a restart, the pending starts and the failed ones still within
        their expiry (sessions without an idTag, an EMP or an expiry are skipped)."""
        for session in failed:
            if session.id_tag and session.emp and session.expires_at is not None:
                self._remember_failed(
                    session.charge_point, session.id_tag, session.emp, session.expires_at
                )
        for session in pending:
            if session.id_tag and session.emp:
                self._pending[session.id_tag] = session.emp

    def _remember_failed(self, charge_point: str, id_tag: str, emp: str, until: float) -> None:
        if len(self._failed) >= FAILED_CAP:
            now = self._clock()
            for key in [k for k, (_, t) in self._failed.items() if t <= now]:
                del self._failed[key]
            for key in list(self._failed)[: len(self._failed) - FAILED_KEEP]:
                del self._failed[key]
        self._failed[(charge_point, id_tag)] = (emp, until)
