"""Outbound OCPI requests: the Token header, request ids, routing headers, envelope reading.

An answer is a success only when it is a parseable envelope with a 1xxx `status_code` and a
2xx HTTP status. A 200 with HTML (a proxy, a captive portal), an empty body, or an envelope
with a 2xxx/3xxx code is not: `delivery_of` says whether it is worth retrying, as the OIOI
client does (oioi/replies.py), so the outbox treats both protocols' partners alike.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from cpo_gateway import logs
from cpo_gateway.bridge.model import Delivery, DeliveryStatus
from cpo_gateway.ocpi.transport import (
    CORRELATION_ID,
    FROM_COUNTRY,
    FROM_PARTY,
    REQUEST_ID,
    TO_COUNTRY,
    TO_PARTY,
    OcpiStatus,
    Party,
    encode_token,
)

log = logs.get(__name__)
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a token page may be large; anything longer is cut
MAX_RETRY_AFTER_S = 86_400.0
_RETRY_STATUSES = frozenset({408, 425, 429})
# 3001 (unable to use the client's API) and 3000 (generic server error) may pass; 3002 and
# 3003 (version, endpoints) need someone to change a configuration first.
_TRANSIENT_CODES = frozenset({OcpiStatus.SERVER_ERROR, OcpiStatus.UNABLE_TO_USE_CLIENT_API})


@dataclass(frozen=True, slots=True)
class OcpiReply:
    """One answer as read: `status_code` None when the body is not an OCPI envelope."""

    http_status: int
    status_code: int | None
    message: str
    data: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    sniff: str = ""  # what the body looked like when it was not an envelope

    @property
    def ok(self) -> bool:
        return (
            200 <= self.http_status <= 299
            and self.status_code is not None
            and 1000 <= self.status_code <= 1999
        )

    @property
    def detail(self) -> str:
        if self.status_code is None:
            return f"HTTP {self.http_status}, no OCPI envelope ({self.sniff})"
        return f"HTTP {self.http_status}, {self.status_code} {self.message}"[:200]


class OcpiCallFailed(Exception):
    """A request that did not succeed: no answer at all, or an answer that is not success."""

    def __init__(self, detail: str, reply: OcpiReply | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reply = reply


def _sniff(body: bytes) -> str:
    if not body.strip():
        return "empty body"
    head = body.lstrip()[:15].lower()
    if head.startswith((b"<!doctype", b"<html", b"<")):
        return "HTML"
    return "not an envelope"


def read_reply(
    http_status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> OcpiReply:
    """Read an answer; never raises."""
    hdrs = dict(headers or {})
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        obj = None
    code = obj.get("status_code") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or isinstance(code, bool) or not isinstance(code, int):
        return OcpiReply(http_status, None, "", None, hdrs, _sniff(body))
    message = obj.get("status_message")
    return OcpiReply(
        http_status, code, message if isinstance(message, str) else "", obj.get("data"), hdrs
    )


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def delivery_of(reply: OcpiReply) -> Delivery:
    """How a pushed message fared, for the outbox."""
    code = reply.status_code
    if reply.http_status == 401:
        status = DeliveryStatus.UNAUTHORIZED  # our token: every message would get the same
    elif 200 <= reply.http_status <= 299:
        if code is None:
            status = DeliveryStatus.RETRY  # not the partner's word: a proxy or a broken peer
        elif 1000 <= code <= 1999:
            status = DeliveryStatus.DELIVERED
        elif code in _TRANSIENT_CODES:
            status = DeliveryStatus.RETRY
        else:
            status = DeliveryStatus.REJECTED
    elif reply.http_status in _RETRY_STATUSES or 500 <= reply.http_status <= 599:
        status = DeliveryStatus.RETRY
    elif 400 <= reply.http_status <= 499:
        status = DeliveryStatus.REJECTED
    else:
        status = DeliveryStatus.RETRY
    delay = None
    if status is DeliveryStatus.RETRY:
        delay = _retry_after(reply.headers.get("Retry-After"))
    return Delivery(status, reply.detail, delay, reply.http_status, code)


def unreachable(exc: BaseException) -> Delivery:
    return Delivery(DeliveryStatus.RETRY, f"{type(exc).__name__}: {exc}"[:200])


class OcpiClient:
    """One HTTP client for every OCPI partner (keep-alive per host)."""

    def __init__(
        self, ours: Party | None = None, *, connect_timeout_s: float = 5.0, timeout_s: float = 30.0
    ) -> None:
        self._ours = ours
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        token: str,
        body: object = None,
        *,
        to: Party | None = None,
        timeout_s: float | None = None,
        params: Mapping[str, str] | None = None,
    ) -> OcpiReply:
        """Send one request; an answer of any kind is returned, no answer raises
        OcpiCallFailed. `to`: the partner's party for a functional module (routing headers
        are left out for configuration modules)."""
        await self.start()
        assert self._session is not None
        rid = uuid.uuid4().hex
        headers = {"Authorization": encode_token(token), REQUEST_ID: rid, CORRELATION_ID: rid}
        if to is not None and self._ours is not None:
            headers.update(
                {
                    TO_COUNTRY: to.country_code,
                    TO_PARTY: to.party_id,
                    FROM_COUNTRY: self._ours.country_code,
                    FROM_PARTY: self._ours.party_id,
                }
            )
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        total = timeout_s or self._timeout_s
        timeout = aiohttp.ClientTimeout(total=total, connect=min(self._connect_timeout_s, total))
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=timeout, params=params
            ) as resp:
                raw = await _read_capped(resp)
                reply = read_reply(resp.status, raw, resp.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("ocpi.call_unanswered", method=method, url=url, error=type(exc).__name__)
            raise OcpiCallFailed(f"{type(exc).__name__}: {exc}"[:200]) from exc
        log.info(
            "ocpi.call",
            method=method,
            url=url,
            request_id=rid,
            http_status=reply.http_status,
            status_code=reply.status_code,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return reply

    async def call(
        self,
        method: str,
        url: str,
        token: str,
        body: object = None,
        *,
        to: Party | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """The answer's `data` when the request succeeded; else OcpiCallFailed."""
        reply = await self.request(method, url, token, body, to=to, timeout_s=timeout_s)
        if not reply.ok:
            raise OcpiCallFailed(reply.detail, reply)
        return reply.data


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_REPLY_BYTES:
            break
    return b"".join(chunks)[:MAX_REPLY_BYTES]
