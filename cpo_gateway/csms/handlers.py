"""OCPP 1.6 handlers: thin, answering from the core within a time budget.

Transaction messages are answered only after the core has committed their data; a CallError
is returned only when persisting really failed, so the charger retries.

Every Call payload meets the OCA schema of its action first (schemas.py); one the schema
refuses as sent is mended of known firmware quirks (quirks.py) and checked again, and the
tolerant parsers of v16.py read what passed.
A payload the schema refuses gets the CallError of the problem, naming the field, with one
exception: a transaction message (Start/StopTransaction, MeterValues) that the parser can
still read is acknowledged and the schema problem logged, because a charger refused keeps
retrying it or drops it, and the session's energy with it (design: always acknowledge
transaction messages). When the parser cannot read it either, the parser's error is sent:
it names the same kind of problem and shows the value.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from cpo_gateway import logs
from cpo_gateway.bridge.core_ports import ChargerSide
from cpo_gateway.bridge.model import (
    AuthDecision,
    BootInfo,
    MeterReport,
    StatusReport,
    TransactionStart,
    TransactionStop,
)
from cpo_gateway.csms import schema_gate, v16
from cpo_gateway.csms.connection import ChargerConnection, HandlerError
from cpo_gateway.csms.frames import Call, ErrorCode, PayloadError
from cpo_gateway.csms.schemas import SchemaProblem, SchemaSet
from cpo_gateway.csms.security import CertificateService
from cpo_gateway.csms.v16_security import SecurityEvent, sign_certificate_conf

log = logs.get(__name__)
Handle = Callable[[ChargerConnection, object], Awaitable[dict[str, object]]]
_TRANSACTIONAL = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})
_OTHER = "(unhandled)"


def _iso(epoch: float) -> str:
    """An OCPP timestamp: UTC, whole seconds, with a Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Handlers:
    def __init__(
        self,
        core: ChargerSide,
        *,
        heartbeat_interval_s: int,
        id_tag_expiry_s: int,
        clock: Callable[[], float] = time.time,
        validate_schemas: bool = True,
        certificates: CertificateService | None = None,
    ) -> None:
        """`clock`: epoch seconds, for the times our answers carry (injectable, as the
        core's clock is)."""
        self._core = core
        self._clock = clock
        self._schemas = SchemaSet.load("1.6") if validate_schemas else None
        self._certificates = certificates
        self._interval = heartbeat_interval_s
        self._expiry_s = id_tag_expiry_s
        self.counts: dict[str, int] = {}
        self._table: dict[str, Handle] = {
            "BootNotification": self._boot,
            "Heartbeat": self._heartbeat,
            "StatusNotification": self._status,
            "Authorize": self._authorize,
            "StartTransaction": self._start,
            "StopTransaction": self._stop,
            "MeterValues": self._meter,
            "DataTransfer": self._data_transfer,
            "DiagnosticsStatusNotification": self._ack,
            "FirmwareStatusNotification": self._ack,
            "SignCertificate": self._sign_certificate,
            "SecurityEventNotification": self._security_event,
        }

    def label(self, action: str) -> str:
        """The action as a metric label: any name we do not handle is one label."""
        return action if action in self._table else _OTHER

    async def dispatch(self, conn: ChargerConnection, call: Call) -> dict[str, object]:
        parser = v16.INBOUND.get(call.action)
        handle = self._table.get(call.action)
        if parser is None or handle is None:
            # One counter for every unknown name: a charger must not grow the metrics table.
            self.counts[_OTHER] = self.counts.get(_OTHER, 0) + 1
            code = v16.unhandled_action_error(call.action)
            raise HandlerError(code, f"{call.action[:64]} is not handled by this central system")
        self.counts[call.action] = self.counts.get(call.action, 0) + 1
        if self._schemas is None:
            parsed = parser(conn.charge_point_id, call.payload)  # raises PayloadError
        else:
            parsed = self._checked(conn, call, parser)
        if call.action not in _TRANSACTIONAL:
            return await handle(conn, parsed)
        try:
            return await handle(conn, parsed)
        except HandlerError:
            raise
        except Exception as exc:
            # Nothing was committed: the charger must retry, so it gets a CallError.
            log.exception(
                "ocpp.persist_failed", charge_point_id=conn.charge_point_id, action=call.action
            )
            raise HandlerError(
                ErrorCode.INTERNAL_ERROR, "could not store the message; retry"
            ) from exc

    def _checked(self, conn: ChargerConnection, call: Call, parser: v16.Parser) -> object:
        """The parsed payload, once it has met its schema (csms/schema_gate.py)."""
        assert self._schemas is not None
        return schema_gate.checked(
            self._schemas,
            conn.charge_point_id,
            call.action,
            call.payload,
            parser,
            transactional=_TRANSACTIONAL,
            error=schema_error,
        )

    def _id_tag_info(self, decision: AuthDecision) -> dict[str, object]:
        return v16.id_tag_info(decision, _iso(self._clock() + self._expiry_s))

    async def _boot(self, conn: ChargerConnection, info: object) -> dict[str, object]:
        assert isinstance(info, BootInfo)
        accepted = await self._core.boot(info)
        conn.booted = accepted
        return v16.boot_conf(
            "Accepted" if accepted else "Pending", self._interval, _iso(self._clock())
        )

    async def _heartbeat(self, conn: ChargerConnection, _: object) -> dict[str, object]:
        return v16.heartbeat_conf(_iso(self._clock()))

    async def _status(self, conn: ChargerConnection, report: object) -> dict[str, object]:
        assert isinstance(report, StatusReport)
        await self._core.status_notification(report)
        return v16.empty_conf()

    async def _authorize(self, conn: ChargerConnection, id_tag: object) -> dict[str, object]:
        assert isinstance(id_tag, str)
        decision = await self._core.authorize(conn.charge_point_id, id_tag)
        return {"idTagInfo": self._id_tag_info(decision)}

    async def _start(self, conn: ChargerConnection, start: object) -> dict[str, object]:
        assert isinstance(start, TransactionStart)
        started = await self._core.start_transaction(start)
        return v16.start_conf(started.transaction_id, self._id_tag_info(started.decision))

    async def _stop(self, conn: ChargerConnection, stop: object) -> dict[str, object]:
        assert isinstance(stop, TransactionStop)
        decision = await self._core.stop_transaction(stop)
        return v16.stop_conf(self._id_tag_info(decision) if decision else None)

    async def _meter(self, conn: ChargerConnection, report: object) -> dict[str, object]:
        assert isinstance(report, MeterReport)
        await self._core.meter_values(report)
        return v16.empty_conf()

    async def _data_transfer(self, conn: ChargerConnection, parsed: object) -> dict[str, object]:
        assert isinstance(parsed, tuple)
        log.info("ocpp.data_transfer", charge_point_id=conn.charge_point_id, vendor_id=parsed[0])
        return v16.data_transfer_conf("UnknownVendorId")

    async def _ack(self, conn: ChargerConnection, status: object) -> dict[str, object]:
        log.info("ocpp.status_report", charge_point_id=conn.charge_point_id, status=status)
        return v16.empty_conf()

    async def _sign_certificate(self, conn: ChargerConnection, csr: object) -> dict[str, object]:
        """Signed now, answered Accepted/Rejected; the chain follows after the reply."""
        assert isinstance(csr, str)
        if self._certificates is None:
            return sign_certificate_conf(False)
        return sign_certificate_conf(await self._certificates.accept_csr(conn.charge_point_id, csr))

    async def _security_event(self, conn: ChargerConnection, event: object) -> dict[str, object]:
        assert isinstance(event, SecurityEvent)
        if self._certificates is not None:
            await self._certificates.security_event(event)
        return v16.empty_conf()


def schema_error(action: str, problem: SchemaProblem) -> PayloadError:
    """The PayloadError of a schema problem: its description and details name the field as
    the parsers' errors do ("MeterValues.meterValue[0].timestamp: must be ...")."""
    where = f"{action}.{problem.field}" if problem.field else action
    return PayloadError(
        ErrorCode(problem.error_code), f"{where}: {problem.message}", {"field": where}
    )
