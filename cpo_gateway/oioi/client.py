"""The EMP client: one aiohttp ClientSession per EMP (keep-alive, timeouts, the key header).

Implements the core's EmpLink: typed results only, no raw dicts past this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from cpo_gateway import logs
from cpo_gateway.bridge.cdr import cdr_from_dict
from cpo_gateway.bridge.model import (
    Delivery,
    DeliveryStatus,
    EvseStatus,
    Place,
    StatusUpdate,
    VerifyOutcome,
)
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.station_sync import station_from_dict
from cpo_gateway.oioi.render import (
    render_cdr,
    render_rfid_verify,
    render_station_post,
    render_status,
)
from cpo_gateway.oioi.replies import read_delivery, read_verify
from cpo_gateway.timing import NO_TIMINGS, Timings

log = logs.get(__name__)
# Answers are small; anything longer is cut here so a broken peer cannot fill memory.
MAX_REPLY_BYTES = 1024 * 1024
VERIFY_KIND = "rfid-verify"  # the latency histogram's kind for online authorization
# The OIOI call that carries each kind of what the core owes an EMP. OIOI has none for
# session updates or command results: the core owes those only to partners that want them.
CALLS: dict[Owed, str] = {
    Owed.STATION: "station-post",
    Owed.EVSE_STATUS: "connector-post-status",
    Owed.CDR: "session-post",
}
CARRIED = frozenset(CALLS)


class NotCarried(ValueError):
    """A kind OIOI has no call for reached the OIOI client: a wiring bug (the core was told
    this partner wants it)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    url: str
    api_key: str
    # rfid-verify is asked while a driver waits at the charger: a hard deadline per EMP.
    verify_timeout_s: float = 3.0
    # Everything else (station-post, statuses, CDRs): a delivery that takes longer is retried.
    request_timeout_s: float = 30.0


def call_of(kind: str) -> str:
    """The OIOI call for an outbox kind; NotCarried for a kind OIOI does not carry."""
    try:
        return CALLS[Owed(kind)]
    except (KeyError, ValueError):
        carried = ", ".join(sorted(CARRIED))
        raise NotCarried(
            f"outbox kind {str(kind)!r} has no OIOI call (OIOI carries {carried}): "
            "the partner's terms must not ask for it"
        ) from None


def render(kind: str, payload: Mapping[str, Any]) -> dict[str, object]:
    """The OIOI body for an outbox row (NotCarried for a kind OIOI has no call for)."""
    call = call_of(kind)
    if call == "session-post":
        return render_cdr(cdr_from_dict(dict(payload)))
    if call == "connector-post-status":
        update = StatusUpdate(
            payload["evse_id"], EvseStatus(payload["status"]), payload["partner_identifier"]
        )
        return render_status(update)
    station = station_from_dict(payload["station"])
    return render_station_post(station, payload["partner_identifier"], bool(payload["deleted"]))


class EmpClients:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        connect_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        timings: Timings = NO_TIMINGS,
    ) -> None:
        """`timings`: seconds per request to an EMP by (EMP, kind), answered or not."""
        self._timings = timings
        self._endpoints = {e.name: e for e in endpoints}
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def start(self) -> None:
        for e in self._endpoints.values():
            timeout = aiohttp.ClientTimeout(
                total=e.request_timeout_s, connect=min(self._connect_timeout_s, e.request_timeout_s)
            )
            self._sessions[e.name] = aiohttp.ClientSession(
                timeout=timeout,
                headers={"Authorization": f"key={e.api_key}", "Content-Type": "application/json"},
                connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=30),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )

    def set_key(self, emp: str, api_key: str) -> None:
        """Use a new key for an EMP from the next request on (a reload)."""
        self._endpoints[emp] = dataclasses.replace(self._endpoints[emp], api_key=api_key)
        session = self._sessions.get(emp)
        if session is not None:
            session.headers["Authorization"] = f"key={api_key}"

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def _post(
        self, emp: str, kind: str, body: dict[str, object]
    ) -> tuple[int, bytes, str | None]:
        started = time.perf_counter()
        try:
            return await self._exchange(emp, body)
        finally:
            self._timings.labels(emp, kind).observe(time.perf_counter() - started)

    async def _exchange(self, emp: str, body: dict[str, object]) -> tuple[int, bytes, str | None]:
        endpoint = self._endpoints[emp]
        session = self._sessions[emp]
        async with session.post(endpoint.url, data=orjson.dumps(body)) as resp:
            # read(n) may return a first fragment only: read to the end, up to the cap.
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_REPLY_BYTES:
                    break
            return resp.status, b"".join(chunks)[:MAX_REPLY_BYTES], resp.headers.get("Retry-After")

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        try:
            call = call_of(kind)
        except NotCarried as exc:
            log.error("emp.kind_not_carried", emp=emp, kind=kind, error=str(exc))
            return Delivery(DeliveryStatus.REJECTED, str(exc))
        try:
            body = render(kind, payload)
        except (KeyError, TypeError, ValueError) as exc:
            return Delivery(DeliveryStatus.REJECTED, f"cannot render {call}: {exc}")
        try:
            status, data, retry_after = await self._post(emp, call, body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Delivery(DeliveryStatus.RETRY, f"{type(exc).__name__}: {exc}"[:200])
        return read_delivery(status, data, retry_after, self._clock())

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> VerifyOutcome:
        """The EMP's verdict, or UNREACHABLE when it has none within the EMP's deadline
        (rfid-verify carries no place)."""
        try:
            async with asyncio.timeout(self._endpoints[emp].verify_timeout_s):
                status, data, _ = await self._post(emp, VERIFY_KIND, render_rfid_verify(uid))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("emp.verify_unreachable", emp=emp, error=type(exc).__name__)
            return VerifyOutcome.UNREACHABLE
        return read_verify(status, data)
