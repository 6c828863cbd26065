"""OCPP 2.0.1 handlers: the same core as 1.6, reached through the same types.

The table is a dict of action -> (parser, handler): a module that handles more 2.0.1 actions
(certificates, security events) adds its entries with `add`. Transaction messages are
answered only after the core has committed them; a CallError goes back only when storing
failed, so that the charger sends the message again.

TransactionEvent onto the core: the charger's transactionId is the transaction's
charger_key; Started is a TransactionStart, Updated a MeterReport, Ended a TransactionStop.
Each is idempotent in the core (the key makes a resent start or end the same one, and
readings are folded by their timestamps), so a resent event changes nothing, and events that
arrive out of order give the same result: an Updated or Ended whose Started has not come
starts the transaction itself. Each event is then kept as a TransactionStep by its seqNo.

Every Call payload meets its OCA 2.0.1 schema first, under the rules of the 1.6 handlers
(handlers.py): known quirks mended, a refused payload answered with the problem's CallError
naming the field, except a TransactionEvent the parser can still read (acknowledged, the
problem logged: a charger refused drops it, and the session's energy with it).
An Ended closes the transaction and its CDR goes with what is known then: readings of
earlier events arriving after it are kept, as for a late stop in 1.6, but do not change it.
Except when the Ended came before its Started (seqNo above 0, no Started kept) and does not
itself say who charged and where (idToken, EVSE): then the CDR is held ("waiting for earlier
events of the transaction") and the late Started (or an Updated after it) fills in the
idTag, the EVSE, the start time and the first reading, and releases the CDR in its commit
(Charging.late). Energy then runs from the Started's reading to the Ended's, by seqNo.

A Started or Updated that carries `chargingState` Charging, SuspendedEV or SuspendedEVSE
reports the connector's state as a StatusNotification would (2.0.1 StatusNotification only
says Occupied): the status engine orders it by the event's timestamp like any report, and the
EMP sees charging apart from suspended. EVConnected and Idle add nothing an Occupied has not
said, and after an Ended the charger's own StatusNotification tells what follows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from cpo_gateway import logs
from cpo_gateway.bridge.core_ports import ChargerSide
from cpo_gateway.bridge.model import (
    AuthDecision,
    BootInfo,
    ConnectorState,
    LateReport,
    MeterReport,
    StatusReport,
    StepKind,
    TransactionStart,
    TransactionStep,
    TransactionStop,
)
from cpo_gateway.csms import schema_gate, v201
from cpo_gateway.csms.codes import codes_for
from cpo_gateway.csms.connection import ChargerConnection, HandlerError
from cpo_gateway.csms.frames import Call, ErrorCode, PayloadError
from cpo_gateway.csms.schemas import SchemaProblem, SchemaSet
from cpo_gateway.csms.v201_tx import TransactionEvent, first_wh, last_wh, parse_transaction_event

log = logs.get(__name__)
Handle = Callable[[ChargerConnection, object], Awaitable[dict[str, object]]]
Parse = Callable[[str, dict[str, object]], object]
_TRANSACTIONAL = frozenset({"TransactionEvent"})
_CHARGING_STATES = {
    "Charging": ConnectorState.CHARGING,
    "SuspendedEV": ConnectorState.SUSPENDED_EV,
    "SuspendedEVSE": ConnectorState.SUSPENDED_EVSE,
}
_OTHER = "(unhandled)"


def _iso(epoch: float) -> str:
    """A 2.0.1 dateTime: UTC, whole seconds, with a Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Handlers201:
    """Answers a 2.0.1 charger's Calls from the core, one table entry per action."""

    def __init__(
        self,
        core: ChargerSide,
        *,
        heartbeat_interval_s: int,
        id_tag_expiry_s: int,
        clock: Callable[[], float] = time.time,
        validate_schemas: bool = True,
    ) -> None:
        """`clock`: epoch seconds, for the times our answers carry (injectable, as the
        core's clock is)."""
        self._core = core
        self._clock = clock
        self._schemas = SchemaSet.load("2.0.1") if validate_schemas else None
        self._interval = heartbeat_interval_s
        self._expiry_s = id_tag_expiry_s
        self.counts: dict[str, int] = {}
        self._table: dict[str, tuple[Parse, Handle]] = {}
        for action, handle in {
            "BootNotification": self._boot,
            "Heartbeat": self._heartbeat,
            "StatusNotification": self._status,
            "Authorize": self._authorize,
            "NotifyEvent": self._notice,
            "NotifyReport": self._notice,
        }.items():
            self.add(action, v201.INBOUND[action], handle)
        self.add("TransactionEvent", lambda _cp, p: parse_transaction_event(p), self._event)

    def add(self, action: str, parse: Parse, handle: Handle) -> None:
        """Handle one more action (parse raises PayloadError; handle answers)."""
        self._table[action] = (parse, handle)

    def handles(self, action: str) -> bool:
        return action in self._table

    async def dispatch(self, conn: ChargerConnection, call: Call) -> dict[str, object]:
        entry = self._table.get(call.action)
        if entry is None:
            self.counts[_OTHER] = self.counts.get(_OTHER, 0) + 1
            known = call.action in v201.CHARGING_STATION_ACTIONS
            code = ErrorCode.NOT_SUPPORTED if known else ErrorCode.NOT_IMPLEMENTED
            raise HandlerError(code, f"{call.action[:64]} is not handled by this central system")
        self.counts[call.action] = self.counts.get(call.action, 0) + 1
        parse, handle = entry
        parsed = self._checked(conn, call, parse)  # raises PayloadError
        if call.action not in _TRANSACTIONAL:
            return await handle(conn, parsed)
        try:
            return await handle(conn, parsed)
        except HandlerError:
            raise
        except Exception as exc:
            log.exception(
                "ocpp.persist_failed", charge_point_id=conn.charge_point_id, action=call.action
            )
            raise HandlerError(
                ErrorCode.INTERNAL_ERROR, "could not store the message; retry"
            ) from exc

    def _checked(self, conn: ChargerConnection, call: Call, parse: Parse) -> object:
        """The parsed payload, once it has met its schema (csms/schema_gate.py)."""
        if self._schemas is None:
            return parse(conn.charge_point_id, call.payload)
        return schema_gate.checked(
            self._schemas,
            conn.charge_point_id,
            call.action,
            call.payload,
            parse,
            transactional=_TRANSACTIONAL,
            error=schema_error,
        )

    def _token_info(self, decision: AuthDecision) -> dict[str, object]:
        return v201.id_token_info(decision, _iso(self._clock() + self._expiry_s))

    # --- provisioning ----------------------------------------------------------------------
    async def _boot(self, conn: ChargerConnection, info: object) -> dict[str, object]:
        assert isinstance(info, BootInfo)
        accepted = await self._core.boot(info)
        conn.booted = accepted
        return v201.boot_conf(
            "Accepted" if accepted else "Pending", self._interval, _iso(self._clock())
        )

    async def _heartbeat(self, conn: ChargerConnection, _: object) -> dict[str, object]:
        return v201.heartbeat_conf(_iso(self._clock()))

    async def _status(self, conn: ChargerConnection, report: object) -> dict[str, object]:
        assert isinstance(report, v201.StatusReport201)
        cp = conn.charge_point_id
        if report.evse_id == 0:
            connector = 0
        else:
            connector = self._core.connector_by_address(cp, report.evse_id, report.connector_id)
        state = report.state
        if state is ConnectorState.PREPARING and connector in conn.running:
            # Occupied by a transaction that runs: charging, unless it said it is suspended.
            state = conn.charging_states.get(connector, ConnectorState.CHARGING)
        await self._core.status_notification(
            StatusReport(cp, connector, state, "NoError", report.timestamp)
        )
        return {}

    async def _notice(self, conn: ChargerConnection, notice: object) -> dict[str, object]:
        assert isinstance(notice, v201.Notice)
        log.info(
            "ocpp.notice",
            charge_point_id=conn.charge_point_id,
            action=notice.action,
            seq_no=notice.seq_no,
            tbc=notice.tbc,
            items=notice.items,
        )
        return {}

    # --- authorization ----------------------------------------------------------------------
    async def _authorize(self, conn: ChargerConnection, token: object) -> dict[str, object]:
        assert isinstance(token, v201.IdToken)
        decision = await self._core.authorize(conn.charge_point_id, token.value)
        return {"idTokenInfo": self._token_info(decision)}

    # --- transactions -----------------------------------------------------------------------
    def _connector(self, cp: str, ev: TransactionEvent) -> int:
        if ev.evse_id is None or ev.evse_id == 0:
            return 0
        return self._core.connector_by_address(cp, ev.evse_id, ev.connector_id or 1)

    async def _event(self, conn: ChargerConnection, parsed: object) -> dict[str, object]:
        assert isinstance(parsed, TransactionEvent)
        ev, cp = parsed, conn.charge_point_id
        key = ev.transaction_id
        # (our transaction id, connector): asked of the store once per connection and key.
        known = conn.transactions.get(key)
        ended = False
        if known is None:
            tx = await self._core.charger_transaction(cp, key)
            known = None if tx is None else (tx.id, tx.connector)
            ended = tx is not None and tx.stopped_at is not None
        connector = known[1] if known is not None else self._connector(cp, ev)
        id_tag = ev.id_token.value if ev.id_token is not None else None
        if id_tag is None and ev.remote_start_id is not None:
            # Bound by remoteStartId: the token our RequestStartTransaction carried.
            id_tag = conn.remote_starts.get(ev.remote_start_id)
            if id_tag is None and (known is None or ev.kind is StepKind.STARTED):
                # Sent on an earlier connection or before a restart: the stored start.
                id_tag = await self._core.remote_start_tag(cp, ev.remote_start_id)
        reply: dict[str, object] = {}
        if ended and ev.kind is not StepKind.ENDED:
            return await self._late(conn, ev, id_tag)
        if ev.kind is StepKind.ENDED:
            decision = await self._core.stop_transaction(
                TransactionStop(
                    cp,
                    0,
                    last_wh(ev.samples),
                    ev.timestamp,
                    id_tag=id_tag,
                    reason=ev.stopped_reason,
                    samples=ev.samples,
                    charger_key=key,
                    connector_id=connector or None,
                    sequence=ev.seq_no,
                )
            )
            conn.running.pop(connector, None)
            conn.charging_states.pop(connector, None)
            conn.transactions.pop(key, None)  # bounded: only running ones are kept
            if decision is not None and ev.id_token is not None:
                reply["idTokenInfo"] = self._token_info(decision)
        else:
            # Readings a start did not take: an Updated's, a late Started's, any but the first.
            # A signed reading is kept from the readings, the start's included.
            fold = (
                ev.kind is StepKind.UPDATED
                or known is not None
                or len(ev.samples) > 1
                or any(s.signed is not None for s in ev.samples)
            )
            if known is None:
                started = await self._core.start_transaction(
                    TransactionStart(
                        cp,
                        connector,
                        id_tag or "",
                        # An Updated that came before its Started: its readings are not the
                        # start's; the earliest reading, whenever it comes, stands in.
                        first_wh(ev.samples) if ev.kind is StepKind.STARTED else None,
                        ev.timestamp,
                        charger_key=key,
                    )
                )
                if ev.id_token is not None:
                    reply["idTokenInfo"] = self._token_info(started.decision)
                if ev.remote_start_id is not None:
                    conn.remote_starts.pop(ev.remote_start_id, None)
                known = (started.transaction_id, connector)
            elif ev.kind is StepKind.STARTED:
                await self._core.start_earlier(known[0], ev.timestamp)
                if id_tag:
                    # Begun by an Updated without idToken: the Started names who charges.
                    late = await self._core.identify_start(known[0], id_tag)
                    if late is not None and ev.id_token is not None:
                        reply["idTokenInfo"] = self._token_info(late)
                placed = self._connector(cp, ev)
                if connector == 0 and placed:
                    # Begun by an Updated that named no EVSE: the Started places it.
                    await self._core.late_report(
                        LateReport(cp, key, placed, None, ev.timestamp, started=True)
                    )
                    conn.running.pop(connector, None)
                    known, connector = (known[0], placed), placed
            conn.transactions[key] = known
            conn.running[connector] = key
            await self._charging_state(conn, connector, ev)
            if ev.samples and fold:
                # The readings and the report share one group commit.
                await asyncio.gather(
                    self._core.meter_values(
                        MeterReport(cp, connector, known[0], ev.samples, charger_key=key)
                    ),
                    self._core.record_step(self._step(cp, ev)),
                )
                return reply
        await self._core.record_step(self._step(cp, ev))
        return reply

    async def _late(
        self, conn: ChargerConnection, ev: TransactionEvent, id_tag: str | None
    ) -> dict[str, object]:
        """A Started or Updated of a transaction whose Ended came first: it fills in what
        the Ended lacked (module docstring); the transaction is over, so nothing runs."""
        cp = conn.charge_point_id
        decision = await self._core.late_report(
            LateReport(
                cp,
                ev.transaction_id,
                self._connector(cp, ev),
                id_tag,
                ev.timestamp,
                started=ev.kind is StepKind.STARTED,
                samples=ev.samples,
            )
        )
        if ev.remote_start_id is not None:
            conn.remote_starts.pop(ev.remote_start_id, None)
        await self._core.record_step(self._step(cp, ev))
        if decision is None or ev.id_token is None:
            return {}
        return {"idTokenInfo": self._token_info(decision)}

    async def _charging_state(
        self, conn: ChargerConnection, connector: int, ev: TransactionEvent
    ) -> None:
        """Feed a changed chargingState to the status engine (module docstring)."""
        state = _CHARGING_STATES.get(ev.charging_state or "")
        if state is None or connector == 0 or conn.charging_states.get(connector) is state:
            return
        await self._core.status_notification(
            StatusReport(conn.charge_point_id, connector, state, "NoError", ev.timestamp)
        )
        conn.charging_states[connector] = state

    @staticmethod
    def _step(cp: str, ev: TransactionEvent) -> TransactionStep:
        return TransactionStep(
            charge_point_id=cp,
            charger_key=ev.transaction_id,
            sequence=ev.seq_no,
            kind=ev.kind,
            timestamp=ev.timestamp,
            trigger=ev.trigger_reason,
            reason=ev.stopped_reason,
            remote_id=ev.remote_start_id,
            queued=ev.offline,
        )


# A schema problem comes in 2.0.1 spelling; a PayloadError carries the 1.6 code (the parsers'
# classification), which the connection spells the 2.0.1 way again when it answers.
_AS_1_6 = {code: codes_for("1.6")[problem] for problem, code in codes_for("2.0.1").items()}


def schema_error(action: str, problem: SchemaProblem) -> PayloadError:
    """The PayloadError of a 2.0.1 schema problem, naming the field as the parsers do."""
    where = f"{action}.{problem.field}" if problem.field else action
    code = ErrorCode(_AS_1_6.get(problem.error_code, ErrorCode.GENERIC_ERROR.value))
    return PayloadError(code, f"{where}: {problem.message}", {"field": where})
