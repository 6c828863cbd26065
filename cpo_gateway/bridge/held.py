"""CDRs held for review (see cdr.review): released as they are, or corrected and released.

One piece for every way ops act on them (the CLI, the console): the CDR is built as at the
stop, a corrected one is judged again, and the outbox row and the session's end are one
commit (`release_reviewed`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.cdr import build_session_update, review
from cpo_gateway.bridge.clock import to_rfc3339
from cpo_gateway.bridge.late_reports import WAITING_DETAIL
from cpo_gateway.bridge.model import Interval
from cpo_gateway.bridge.owed import Owed, SessionPhase
from cpo_gateway.bridge.ports import NewOutbox, SessionState
from cpo_gateway.bridge.storage import ReviewStore
from cpo_gateway.bridge.transactions import cdr_row, session_cdr


@dataclass(frozen=True, slots=True)
class Released:
    ok: bool
    detail: str
    usage: bool = False  # the correction itself was malformed (a bad number or time)


async def release_held(
    store: ReviewStore,
    catalogue: Catalogue,
    partners: Mapping[str, str],  # EMP name -> partner identifier
    session_id: str,
    *,
    clock: Callable[[], float],
    kwh: float | None = None,
    stop: str | None = None,
    follows: Mapping[str, str] | None = None,
) -> Released:
    """Queue a held session's CDR; with `kwh` (and `stop`, ISO 8601) corrected first. An
    EMP in `follows` (it is owed session updates) also gets the session's end, withheld
    with the CDR, with the CDR's figures."""
    session = await store.session(session_id)
    if session is None or session.state != SessionState.NEEDS_REVIEW:
        return Released(False, "no session held for review")
    tx = await store.transaction(session.transaction_id) if session.transaction_id else None
    if tx is not None and session.detail == WAITING_DETAIL:
        # Its Started never came: nothing says who charged or where, so no EMP can be billed.
        if session.emp is None:
            return Released(False, f"no EMP is known: its idToken never came ({WAITING_DETAIL})")
        if tx.connector == 0:
            return Released(False, f"the EVSE that served it is not known ({WAITING_DETAIL})")
    owed = None if tx is None else session_cdr(catalogue, partners, tx, session)
    if owed is None or session.emp is None:
        return Released(False, "no configured EMP is owed its CDR")
    cdr, speed_kw = owed
    detail = f"released as it was (held: {session.detail})"
    if kwh is not None:
        if not math.isfinite(kwh) or kwh < 0:
            return Released(False, "kwh must be a number of at least 0", usage=True)
        new_stop = cdr.session_interval.stop
        if stop is not None:
            new_stop = to_rfc3339(stop)
            if new_stop is None:
                return Released(False, f"stop {stop!r} is not an ISO 8601 time", usage=True)
        charging = cdr.charging_interval
        if charging is not None and new_stop is not None and charging.stop:
            charging = Interval(charging.start, min(charging.stop, new_stop))
        cdr = dataclasses.replace(
            cdr,
            energy_kwh=round(kwh, 3),
            session_interval=Interval(cdr.session_interval.start, new_stop),
            charging_interval=charging,
        )
        reason = review(cdr, speed_kw, clock())
        if reason is not None:
            return Released(False, f"the corrected CDR is still implausible: {reason}")
        detail = f"corrected to {cdr.energy_kwh} kWh, stop {new_stop} (held: {session.detail})"
    rows = [cdr_row(session.emp, cdr)]
    partner = (follows or {}).get(session.emp)
    if partner is not None and tx is not None:
        end = build_session_update(tx, session, cdr.evse_id, partner, SessionPhase.ENDED, clock())
        end = dataclasses.replace(
            end, energy_kwh=cdr.energy_kwh, stop=cdr.session_interval.stop or end.stop
        )
        rows.append(NewOutbox(session.emp, Owed.SESSION, session.id, end.to_dict()))
    if not await store.release_reviewed(session.id, rows, detail, clock()):
        return Released(False, "no longer held for review")
    return Released(True, f"CDR queued for {session.emp} ({cdr.energy_kwh} kWh)")
