"""Commands a partner sends for a charger, answered in two steps: at once whether the
command can go to the charger (accepted, rejected, unknown session, not supported), then,
once the charger has answered or the deadline passed, its result through the outbox.

What is durable before the partner hears "accepted": the command's result row, written
with the change that accepts it (a remote start's EVSE claim, a reservation) or on its own,
already due at the deadline and reading "timeout". When the charger answers, the row is
rewritten with the outcome, due at once, in the commit that records the outcome (the
failed session, the reservation's state). So a process that dies after the answer still
owes exactly one result: the timeout, when its deadline comes. A row already sent is never
rewritten: the partner gets one result per command.

A remote start goes through the same path as every EMP's (bridge/remote.py: the one-open-
session-per-EVSE claim, pending starts, late starts); this module only splits it at the
claim, so the partner's answer does not wait for the charger.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.catalogue import Catalogue, Connector
from cpo_gateway.bridge.model import CommandResult, CommandStatus, Outcome, StartResult, User
from cpo_gateway.bridge.owed import CommandOutcome, Owed
from cpo_gateway.bridge.ports import (
    ChargerControl,
    NewOutbox,
    Reservation,
    ReservationState,
    SessionState,
)
from cpo_gateway.bridge.remote import Remote
from cpo_gateway.bridge.storage import CommandStore

log = logs.get(__name__)


class Verdict(StrEnum):
    """What the partner is told at once."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN_SESSION = "unknown_session"
    NOT_SUPPORTED = "not_supported"
    UNKNOWN_PLACE = "unknown_place"  # no such EVSE or connector in the catalogue


class Result(StrEnum):
    """How a command ended, as its result row says."""

    ACCEPTED = "accepted"
    CANCELED_RESERVATION = "canceled_reservation"
    EVSE_OCCUPIED = "evse_occupied"
    EVSE_INOPERATIVE = "evse_inoperative"
    FAILED = "failed"
    NOT_SUPPORTED = "not_supported"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    UNKNOWN_RESERVATION = "unknown_reservation"


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    detail: str = ""
    timeout_s: int = 0  # how long the partner may wait for the result
    session_id: str | None = None


_FROM_CHARGER = {
    CommandStatus.ACCEPTED: Result.ACCEPTED,
    CommandStatus.REJECTED: Result.REJECTED,
    CommandStatus.NOT_SUPPORTED: Result.NOT_SUPPORTED,
    CommandStatus.TIMEOUT: Result.TIMEOUT,
    CommandStatus.OFFLINE: Result.FAILED,
    CommandStatus.FAILED: Result.FAILED,
    CommandStatus.OCCUPIED: Result.EVSE_OCCUPIED,
    CommandStatus.INOPERATIVE: Result.EVSE_INOPERATIVE,
}
_FROM_START = {
    Outcome.OK: Result.ACCEPTED,
    Outcome.EVSE_TIMEOUT: Result.TIMEOUT,
    Outcome.EVSE_IN_USE: Result.EVSE_OCCUPIED,
}
_REFUSED_START = {
    Outcome.EVSE_NOT_FOUND: Verdict.UNKNOWN_PLACE,
    Outcome.EVSE_IN_USE: Verdict.REJECTED,
    Outcome.EVSE_ERROR: Verdict.REJECTED,
    Outcome.BAD_USER: Verdict.REJECTED,
}
_MARGIN_S = 5.0  # the result row falls due this long after the charger's own deadline


class Commands:
    def __init__(
        self,
        store: CommandStore,
        catalogue: Catalogue,
        chargers: ChargerControl,
        remote: Remote,
        *,
        deadline_s: float,
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
        clock: Callable[[], float],
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        """`deadline_s`: how long a charger may take to answer a command."""
        self._store = store
        self._catalogue = catalogue
        self._chargers = chargers
        self._remote = remote
        self._deadline_s = deadline_s
        self._spawn = spawn
        self._clock = clock
        self._new_id = new_id
        self.timeout_s = int(deadline_s + _MARGIN_S + 0.999)

    def _owed(
        self, emp: str, reply_to: str, command: str, session_id: str | None = None
    ) -> NewOutbox:
        """The result row a command owes, reading "timeout" and due at its deadline. Its
        key is ours (unique per command); `reference` is where the partner wants it."""
        outcome = CommandOutcome(
            reply_to,
            command,
            Result.TIMEOUT.value,
            "the charger did not answer in time",
            session_id,
        )
        due = self._clock() + self.timeout_s
        return NewOutbox(emp, Owed.COMMAND_RESULT, self._new_id(), outcome.to_dict(), due)

    @staticmethod
    def _settled(owed: NewOutbox, result: Result, detail: str) -> NewOutbox:
        payload = {**owed.payload, "result": result.value, "detail": detail[:200]}
        return NewOutbox(owed.emp, owed.kind, owed.key, payload, None)

    def _accepted(self, session_id: str | None = None) -> Answer:
        return Answer(Verdict.ACCEPTED, timeout_s=self.timeout_s, session_id=session_id)

    def _run(self, work: Awaitable[object], name: str) -> None:
        async def run() -> None:
            await work

        self._spawn(run(), name)

    # --- start and stop ------------------------------------------------------------------------
    async def start(self, emp: str, user: User, evse_id: str, reply_to: str) -> Answer:
        owed = self._owed(emp, reply_to, "start")
        claim = await self._remote.claim(emp, user, evse_id, [owed])
        if isinstance(claim, StartResult):
            return Answer(_REFUSED_START.get(claim.outcome, Verdict.REJECTED), claim.detail)

        def settles(result: StartResult) -> list[NewOutbox]:
            outcome = _FROM_START.get(result.outcome, Result.REJECTED)
            return [self._settled(owed, outcome, result.detail)]

        self._run(self._remote.begin(claim, settles), "command-start")
        return self._accepted(claim.session.id)

    async def stop(self, emp: str, session_id: str, reply_to: str) -> Answer:
        session = await self._store.session(session_id)
        if session is None or session.emp != emp:
            return Answer(Verdict.UNKNOWN_SESSION, f"no session {session_id} of yours")
        if session.state.ended or session.state == SessionState.NEEDS_REVIEW:
            return Answer(Verdict.REJECTED, "the session has ended")
        if not self._chargers.is_connected(session.charge_point):
            return Answer(Verdict.REJECTED, "the charger is offline")
        owed = self._owed(emp, reply_to, "stop", session_id)
        await self._store.owe([owed], self._clock())

        async def run() -> None:
            stopped = await self._remote.stop(emp, session.evse_id or "", session_id)
            outcome = _FROM_START.get(stopped.outcome, Result.REJECTED)
            if stopped.outcome is Outcome.EVSE_ERROR:
                outcome = Result.FAILED
            await self._store.settle([self._settled(owed, outcome, stopped.detail)])

        self._run(run(), "command-stop")
        return self._accepted(session_id)

    # --- unlock --------------------------------------------------------------------------------
    def connector(self, evse_id: str, position: int) -> Connector | None:
        """The `position`-th (1-based) connector of an EVSE, as the catalogue lists them."""
        connectors = self._catalogue.evse(evse_id)
        return connectors[position - 1] if 1 <= position <= len(connectors) else None

    async def unlock(self, emp: str, evse_id: str, position: int, reply_to: str) -> Answer:
        conn = self.connector(evse_id, position)
        if conn is None:
            return Answer(Verdict.UNKNOWN_PLACE, f"no connector {position} on EVSE {evse_id}")
        if not self._chargers.is_connected(conn.charge_point):
            return Answer(Verdict.REJECTED, "the charger is offline")
        owed = self._owed(emp, reply_to, "unlock")
        await self._store.owe([owed], self._clock())

        async def run() -> None:
            result = await self._charger(
                self._chargers.unlock_connector(conn.charge_point, conn.connector)
            )
            outcome = _FROM_CHARGER[result.status]
            await self._store.settle([self._settled(owed, outcome, result.detail)])

        self._run(run(), "command-unlock")
        return self._accepted()

    async def _charger(self, call: Awaitable[CommandResult]) -> CommandResult:
        try:
            return await _within(call, self._deadline_s)
        except TimeoutError:
            return CommandResult(CommandStatus.TIMEOUT, "the charger did not answer in time")

    # --- reservations --------------------------------------------------------------------------
    async def reserve(
        self,
        emp: str,
        user: User,
        evse_id: str,
        ref: str,
        expires_at: str,
        reply_to: str,
    ) -> Answer:
        """Reserve an EVSE (the first of its connectors on one charger) until `expires_at`
        (RFC 3339); the same `ref` again replaces the reservation."""
        connectors = self._catalogue.evse(evse_id)
        if not connectors:
            return Answer(Verdict.UNKNOWN_PLACE, f"unknown EVSE {evse_id}")
        conn = connectors[0]
        if not self._chargers.is_connected(conn.charge_point):
            return Answer(Verdict.REJECTED, "the charger is offline")
        if await self._chargers.reservation_supported(conn.charge_point) is False:
            return Answer(Verdict.NOT_SUPPORTED, "the charger takes no reservations")
        id_tag = await self._remote.id_tag_of(user)
        if id_tag is None:
            return Answer(Verdict.REJECTED, "the token cannot be given to a charger")
        reservation = Reservation(
            emp, ref, conn.charge_point, conn.connector, evse_id, expires_at, id_tag
        )
        owed = self._owed(emp, reply_to, "reserve")
        number = await self._store.save_reservation(reservation, self._clock())
        await self._store.owe([owed], self._clock())

        async def run() -> None:
            result = await self._charger(
                self._chargers.reserve_now(
                    conn.charge_point, conn.connector, expires_at, id_tag, number
                )
            )
            state = ReservationState.HELD if result.accepted else ReservationState.REFUSED
            settled = self._settled(owed, _FROM_CHARGER[result.status], result.detail)
            await self._store.reservation_ended(number, state, [settled])
            log.info("reservation.answered", emp=emp, number=number, result=result.status.value)

        self._run(run(), "command-reserve")
        return self._accepted()

    async def cancel_reservation(self, emp: str, ref: str, reply_to: str) -> Answer:
        held = await self._store.reservation(emp, ref)
        if held is None or held.state in (ReservationState.CANCELED, ReservationState.REFUSED):
            return Answer(Verdict.REJECTED, f"no reservation {ref} of yours")
        if not self._chargers.is_connected(held.charge_point):
            return Answer(Verdict.REJECTED, "the charger is offline")
        owed = self._owed(emp, reply_to, "cancel-reservation")
        await self._store.owe([owed], self._clock())

        async def run() -> None:
            result = await self._charger(
                self._chargers.cancel_reservation(held.charge_point, held.number)
            )
            if result.accepted:
                state, outcome = ReservationState.CANCELED, Result.CANCELED_RESERVATION
            elif result.status is CommandStatus.REJECTED:
                state, outcome = ReservationState.CANCELED, Result.UNKNOWN_RESERVATION
            else:
                state, outcome = held.state, _FROM_CHARGER[result.status]
            settled = self._settled(owed, outcome, result.detail)
            await self._store.reservation_ended(held.number, state, [settled])

        self._run(run(), "command-cancel-reservation")
        return self._accepted()


async def _within(call: Awaitable[CommandResult], seconds: float) -> CommandResult:
    async with asyncio.timeout(seconds):
        return await call
