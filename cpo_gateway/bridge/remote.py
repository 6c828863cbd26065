"""Remote start and stop asked by an EMP.

One session at a time per EVSE: a remote start claims its EVSE in one database transaction
that checks for any open (pending or active) session on it and inserts the pending start, so
of concurrent starts exactly one reaches the charger and the others are answered "in use".
A unique index holds the same rule for remote starts in the database. Starts made at the
charger (cards) are never refused, whatever the gateway believes: the charger is the truth
about what runs, so its StartTransaction is always stored and answered.

A remote start the EMP was told failed (the charger did not answer in time, rejected it, or
the EMP stopped it before it began) must not end in free energy, and must not be billed to
an EMP that was told it did not happen. Its idTag stays recognisable until the pending
start's original expiry. If the charger starts it anyway, the StartTransaction is answered
(after the commit, as always, with Invalid), its session is recorded as origin "late" for the
EMP that asked, and RemoteStopTransaction is sent at once from its own task. The energy
delivered until the stop is kept as a local CDR (`cpo-gateway sessions list`), not posted:
the CPO told the EMP the start failed and stands by that answer; the few Wh until the stop
are the CPO's to absorb, with the record of who asked, when and why it was stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cpo_gateway import logs
from cpo_gateway.bridge.catalogue import Catalogue, Connector
from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.ids import is_evco_id, normalise_evco_id, try_normalise_uid
from cpo_gateway.bridge.model import (
    CommandStatus,
    ConnectorState,
    Outcome,
    StartResult,
    StopResult,
    User,
    UserKind,
)
from cpo_gateway.bridge.pending import PendingStarts
from cpo_gateway.bridge.ports import (
    ChargerControl,
    NewOutbox,
    SessionOrigin,
    SessionRecord,
    SessionState,
)
from cpo_gateway.bridge.storage import RemoteStartStore

log = logs.get(__name__)

_BUSY = {
    ConnectorState.CHARGING,
    ConnectorState.SUSPENDED_EV,
    ConnectorState.SUSPENDED_EVSE,
    ConnectorState.FINISHING,
    ConnectorState.RESERVED,
}
_BROKEN = {ConnectorState.FAULTED, ConnectorState.UNAVAILABLE}
_ANSWERED = {
    CommandStatus.REJECTED: "the charger rejected the command (status Rejected)",
    CommandStatus.NOT_SUPPORTED: "the charger does not support the command (status NotSupported)",
    CommandStatus.OFFLINE: "the charger is offline",
    CommandStatus.FAILED: "the charger answered the command with an error",
    CommandStatus.TIMEOUT: "the charger did not answer in time",
}
_PRINTABLE = re.compile(r"[!-~]{1,64}")  # a contract id usable as (the source of) an idTag
_LATE_STOP_ATTEMPTS = 5
_LATE_STOP_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A remote start that holds its EVSE: its pending session and the charger's idTag."""

    session: SessionRecord
    id_tag: str
    ref: int  # the claim's number, which the charger's start may name (see claim_evse)


Settles = Callable[[StartResult], Sequence[NewOutbox]]


def _nothing_owed(_: StartResult) -> Sequence[NewOutbox]:
    return ()


def hashed_id_tag(evco_id: str, attempt: int) -> str:
    """A stable 20-character upper-case hex idTag for chargers that accept only hex."""
    return hashlib.sha256(f"{evco_id}#{attempt}".encode()).hexdigest()[:20].upper()


class Remote:
    def __init__(
        self,
        store: RemoteStartStore,
        catalogue: Catalogue,
        chargers: ChargerControl,
        pending: PendingStarts,
        states: Callable[[str, int], ConnectorState | None],
        *,
        id_tag_strategy: str,
        pending_timeout_s: float,
        deadline_s: float,
        clock: Callable[[], float],
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._chargers = chargers
        self._pending = pending
        self._states = states
        self._strategy = id_tag_strategy
        self._pending_timeout_s = pending_timeout_s
        self._deadline_s = deadline_s
        self._clock = clock
        self._new_id = new_id

    async def id_tag_of(self, user: User) -> str | None:
        """The idTag a charger is given for `user`; None when it cannot be one."""
        if user.kind is UserKind.RFID:
            return try_normalise_uid(user.identifier)
        if user.kind is UserKind.CONTRACT_ID and _PRINTABLE.fullmatch(user.identifier):
            evco = user.identifier.upper()
        elif user.kind is not UserKind.EVCO_ID or not is_evco_id(user.identifier):
            return None
        else:
            evco = normalise_evco_id(user.identifier)
        if self._strategy == "evco" and len(evco) <= 20:
            return evco
        return await self._store.id_tag_for(evco, hashed_id_tag)

    @staticmethod
    def _unusable(user: User) -> str:
        """Why `user` cannot start a session (`id_tag_of` gave None), in the EMP's terms."""
        if user.kind is UserKind.RFID:
            return f"{user.identifier!r} is not an RFID UID (hex, at most 20 characters)"
        if user.kind is UserKind.EVCO_ID:
            return f"{user.identifier!r} is not an EVCO ID (e.g. DE*8PS*123456*7)"
        return f"a {user.kind.value} cannot start a session here: an EVCO ID or RFID UID can"

    async def start(self, emp: str, user: User, evse_id: str) -> StartResult:
        claim = await self.claim(emp, user, evse_id)
        if isinstance(claim, StartResult):
            return claim
        return await self.begin(claim)

    async def claim(
        self, emp: str, user: User, evse_id: str, owed: Sequence[NewOutbox] = ()
    ) -> Claim | StartResult:
        """The first half of a start: check, pick a connector and claim the EVSE for a
        pending session, with `owed` outbox rows in the claim's commit. A StartResult says
        why not; nothing has been sent to the charger yet."""
        connectors = self._catalogue.evse(evse_id)
        if not connectors:
            return StartResult(Outcome.EVSE_NOT_FOUND, detail=f"unknown EVSE {evse_id}")
        id_tag = await self.id_tag_of(user)
        if id_tag is None:
            return StartResult(Outcome.BAD_USER, detail=self._unusable(user))
        choice = await self._pick(connectors)
        if isinstance(choice, StartResult):
            return choice
        session = SessionRecord(
            id=self._new_id(),
            evse_id=evse_id,
            charge_point=choice.charge_point,
            connector=choice.connector,
            emp=emp,
            origin=SessionOrigin.REMOTE,
            user_kind=user.kind.value,
            user_id=user.identifier,
            id_tag=id_tag,
            auth_status="Accepted",
            auth_path="remote",
            state=SessionState.PENDING,
            created_at=rfc3339(self._clock()),
            expires_at=self._clock() + self._pending_timeout_s,
            transaction_id=None,
        )
        # Stored before the command: a StartTransaction may arrive before the answer. The
        # claim checks and inserts in one transaction: of concurrent starts one wins the EVSE.
        places = [(c.charge_point, c.connector) for c in connectors]
        ref = await self._store.claim_evse(session, places, owed, self._clock())
        if ref is None:
            log.info("session.remote_start_lost", evse_id=evse_id, emp=emp)
            return StartResult(Outcome.EVSE_IN_USE, detail="a session is running on this EVSE")
        self._pending.add(id_tag, emp)
        log.info("session.remote_start", session_id=session.id, evse_id=evse_id, emp=emp)
        return Claim(session, id_tag, ref)

    async def begin(self, claim: Claim, settles: Settles = _nothing_owed) -> StartResult:
        """The second half: send the start to the charger and record its answer.
        `settles(result)`: outbox rows to rewrite with the outcome, in the commit that
        fails the session when there is one."""
        session, id_tag, emp = claim.session, claim.id_tag, claim.session.emp or ""
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await self._chargers.remote_start(
                    session.charge_point, session.connector, id_tag, claim.ref
                )
        except TimeoutError:
            result = None
        if result is not None and result.accepted:
            ok = StartResult(Outcome.OK, session.id)
            await self._settle(settles(ok))
            return ok
        if result is None or result.status is CommandStatus.TIMEOUT:
            failed = StartResult(Outcome.EVSE_TIMEOUT, detail=_ANSWERED[CommandStatus.TIMEOUT])
        else:
            failed = StartResult(Outcome.EVSE_ERROR, detail=_ANSWERED.get(result.status, "failed"))
        if not await self._store.set_session_state(
            session.id,
            SessionState.FAILED,
            "charger did not accept",
            only_from=SessionState.PENDING,
            settles=settles(failed),
        ):
            current = await self._store.session(session.id)
            if current is not None and current.state == SessionState.ACTIVE:
                # Its StartTransaction came before the answer: it runs, so it succeeded.
                ok = StartResult(Outcome.OK, session.id)
                await self._settle(settles(ok))
                return ok
        # The charger may still begin it (its answer came too late): recognise it there.
        until = session.expires_at or self._clock()
        self._pending.fail(session.charge_point, id_tag, emp, until)
        return failed

    async def _settle(self, rows: Sequence[NewOutbox]) -> None:
        if rows:
            await self._store.settle(rows)

    async def _pick(self, connectors: tuple[Connector, ...]) -> Connector | StartResult:
        for conn in connectors:
            if await self._store.open_session_on(conn.charge_point, conn.connector):
                return StartResult(Outcome.EVSE_IN_USE, detail="a session is running on this EVSE")
        online = [c for c in connectors if self._chargers.is_connected(c.charge_point)]
        if not online:
            return StartResult(Outcome.EVSE_ERROR, detail="the charger is offline")
        for conn in online:
            if self._states(conn.charge_point, conn.connector) in _BUSY:
                return StartResult(Outcome.EVSE_IN_USE, detail="the EVSE is occupied")
        usable = [c for c in online if self._states(c.charge_point, c.connector) not in _BROKEN]
        if not usable:
            return StartResult(Outcome.EVSE_ERROR, detail="the EVSE is faulted or unavailable")
        return usable[0]

    async def stop(self, emp: str, evse_id: str, session_id: str | None) -> StopResult:
        if session_id:
            session = await self._store.session(session_id)
        else:
            session = None
            for conn in self._catalogue.evse(evse_id):
                session = await self._store.open_session_on(conn.charge_point, conn.connector)
                if session:
                    break
        if session is None:
            if not session_id and not self._catalogue.evse(evse_id):
                return StopResult(Outcome.EVSE_NOT_FOUND, f"unknown EVSE {evse_id}")
            return StopResult(Outcome.SESSION_NOT_FOUND, "no such session")
        if session.emp != emp:
            return StopResult(Outcome.NOT_ALLOWED, "the session belongs to another partner")
        places = {(c.charge_point, c.connector) for c in self._catalogue.evse(evse_id)}
        if (session.charge_point, session.connector) not in places:
            # Applied anyway, a stop meant for one EVSE would end the session on another.
            if not places:
                return StopResult(Outcome.EVSE_NOT_FOUND, f"unknown EVSE {evse_id}")
            where = session.evse_id or f"{session.charge_point} connector {session.connector}"
            return StopResult(
                Outcome.SESSION_NOT_FOUND,
                f"session {session.id} is not on EVSE {evse_id} (it is on {where})",
            )
        if session.state.ended:
            return StopResult(Outcome.OK, "the session has already ended")
        if session.state == SessionState.PENDING or session.transaction_id is None:
            if await self._store.set_session_state(
                session.id,
                SessionState.FAILED,
                "stopped before it began",
                only_from=SessionState.PENDING,
            ):
                if session.id_tag:
                    until = session.expires_at or self._clock() + self._pending_timeout_s
                    self._pending.fail(session.charge_point, session.id_tag, emp, until)
                return StopResult(Outcome.OK, "the session had not begun")
            # Its StartTransaction was bound meanwhile: it runs, so the charger must stop it.
            current = await self._store.session(session.id)
            if (
                current is None
                or current.state != SessionState.ACTIVE
                or current.transaction_id is None
            ):
                return StopResult(Outcome.OK, "the session has already ended")
            session = current
        assert session.transaction_id is not None
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await self._chargers.remote_stop(
                    session.charge_point,
                    session.transaction_id,
                    await self._charger_key(session.transaction_id),
                )
        except TimeoutError:
            return StopResult(Outcome.EVSE_TIMEOUT, _ANSWERED[CommandStatus.TIMEOUT])
        if result.accepted:
            return StopResult(Outcome.OK)
        if result.status is CommandStatus.TIMEOUT:
            return StopResult(Outcome.EVSE_TIMEOUT, _ANSWERED[CommandStatus.TIMEOUT])
        return StopResult(Outcome.EVSE_ERROR, _ANSWERED.get(result.status, "failed"))

    async def expire_pending(self) -> int:
        """Fail pending starts whose charger never began; returns how many."""
        now = self._clock()
        expired = 0
        for session in await self._store.pending_sessions():
            if session.expires_at is not None and session.expires_at <= now:
                if await self._store.set_session_state(
                    session.id,
                    SessionState.FAILED,
                    "the charger never began",
                    only_from=SessionState.PENDING,
                ):
                    expired += 1
                    log.info("session.start_expired", session_id=session.id)
                if session.id_tag:
                    self._pending.expire(session.id_tag)
        return expired

    async def restore(self) -> None:
        """Re-learn the idTags of pending starts, and of failed ones within their expiry,
        after a restart."""
        failed = await self._store.failed_remote_starts(self._clock())
        self._pending.restore(await self._store.pending_sessions(), failed)

    async def _charger_key(self, transaction_id: int) -> str | None:
        """The charger's own name for a transaction, which a stop must use when it has one."""
        tx = await self._store.transaction(transaction_id)
        return None if tx is None else tx.charger_key

    async def stop_late_start(
        self, charge_point: str, transaction_id: int, session_id: str
    ) -> None:
        """Stop a transaction the charger began for a remote start the EMP was told failed.

        Runs in its own task once the StartTransaction is answered. A charger that gets the
        stop before it has read that answer does not know the transaction id yet and
        rejects it, so each attempt comes after a short pause, while the session is open."""
        for attempt in range(1, _LATE_STOP_ATTEMPTS + 1):
            await asyncio.sleep(_LATE_STOP_PAUSE_S)
            session = await self._store.session(session_id)
            if session is None or session.state != SessionState.ACTIVE:
                return  # the charger ended it on its own
            result = await self._chargers.remote_stop(
                charge_point, transaction_id, await self._charger_key(transaction_id)
            )
            if result.accepted:
                log.info("session.late_start_stopped", session_id=session_id, attempt=attempt)
                return
            log.warning(
                "session.late_stop_refused",
                session_id=session_id,
                transaction_id=transaction_id,
                status=result.status.value,
                attempt=attempt,
            )
        log.error("session.late_stop_failed", session_id=session_id, charge_point_id=charge_point)
