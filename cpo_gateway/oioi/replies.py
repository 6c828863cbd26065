"""Reading an EMP's answers to the calls the gateway sends. No I/O; never raises.

Peers answer in several shapes: HTTP 200 with ``result.code``, 4xx/5xx with a JSON body (a
``result`` object, or an ``error`` property), or with no body or a non-JSON one. The code
decides when there is one, the HTTP status otherwise; a 2xx without a readable code is not a
delivery (a proxy or captive portal answers 200 with HTML), so it is retried.
"""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime

import orjson

from cpo_gateway.bridge.model import Delivery, DeliveryStatus, VerifyOutcome
from cpo_gateway.oioi import codes

# A Retry-After beyond this is not believed: one bad header must not park a message for years.
MAX_RETRY_AFTER_S = 86_400.0
_RETRY_STATUSES = frozenset({408, 425, 429})
_DETAIL_CHARS = 120
_CODE_DIGITS = 4


def read_delivery(http_status: int, body: bytes, retry_after: str | None, now: float) -> Delivery:
    """How a sent message fared: delivered, worth retrying, or rejected for good.

    ``now`` is epoch seconds, used to turn an HTTP-date Retry-After into a delay.
    """
    code, message = read_result(body)
    if http_status == 401 or code == codes.INVALID_API_KEY:
        # Our key, not the message: every other message would get the same answer.
        status = DeliveryStatus.UNAUTHORIZED
    elif 200 <= http_status <= 299:
        if code is None:
            # A 200 without a result is not the EMP's word: a proxy, a captive portal or a
            # broken peer. Only a parseable result with a success code is a delivery.
            status = DeliveryStatus.RETRY
            message = message or f"no OIOI result in the body ({_sniff(body)})"
        elif codes.is_success(code):
            status = DeliveryStatus.DELIVERED
        elif codes.is_transient(code):
            status = DeliveryStatus.RETRY
        else:
            status = DeliveryStatus.REJECTED
    elif http_status in _RETRY_STATUSES or 500 <= http_status <= 599:
        status = DeliveryStatus.RETRY
    elif 400 <= http_status <= 499:
        status = DeliveryStatus.REJECTED
    else:
        # 1xx/3xx or nonsense: a proxy or redirect is in the way, not a fault of the message.
        status = DeliveryStatus.RETRY
    delay = None
    if status is DeliveryStatus.RETRY and retry_after is not None:
        delay = parse_retry_after(retry_after, now)
    return Delivery(
        status=status,
        detail=_detail(http_status, code, message),
        retry_after_s=delay,
        http_status=http_status,
        code=code,
    )


def read_verify(http_status: int, body: bytes) -> VerifyOutcome:
    """The EMP's verdict on a UID; UNREACHABLE when there is none (the offline policy decides).

    Besides the spec's 19x codes, 14x "authentication failed" counts as UNKNOWN: it is a
    clear refusal, and treating it as unreachable could let a lenient policy accept the card.
    """
    ok = 200 <= http_status <= 299
    if not (ok or 400 <= http_status <= 499):
        return VerifyOutcome.UNREACHABLE
    code, _ = read_result(body)
    if code is None:
        return VerifyOutcome.UNREACHABLE
    if codes.is_success(code):
        return VerifyOutcome.ACCEPTED if ok else VerifyOutcome.UNREACHABLE
    known = codes.nearest_known(code)
    if known == 192:
        return VerifyOutcome.BLOCKED
    if known == 193:
        return VerifyOutcome.NO_PAYMENT
    if known is not None and (codes.belongs_to(known, 190) or codes.belongs_to(known, 140)):
        return VerifyOutcome.UNKNOWN
    return VerifyOutcome.UNREACHABLE


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), never negative
    and at most MAX_RETRY_AFTER_S; None when the value is neither form.
    """
    text = value.strip()
    if text.isascii() and text.isdigit():
        # Long digit strings are capped before int(): no huge-number conversion work.
        return MAX_RETRY_AFTER_S if len(text) > 9 else min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000" means UTC with unknown local zone (RFC 5322)
            when = when.replace(tzinfo=UTC)
        delay = when.timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    if delay != delay:  # NaN from a NaN ``now``
        return None
    return min(max(0.0, delay), MAX_RETRY_AFTER_S)


def read_result(body: bytes) -> tuple[int | None, str | None]:
    """The result code and message of a reply body, each None when absent or unreadable."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    result = doc.get("result")
    holder = result if isinstance(result, dict) else doc
    code = _as_code(holder.get("code"))
    message = holder.get("message")
    error = doc.get("error")
    if not isinstance(message, str):
        if isinstance(error, dict):
            message = error.get("message")
            code = code if code is not None else _as_code(error.get("code"))
        else:
            message = error
    return code, message if isinstance(message, str) else None


def _as_code(value: object) -> int | None:
    """A result code as peers send it: 181, 181.0 or "181" (and "000")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**_CODE_DIGITS:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= _CODE_DIGITS:
            return int(text)
    return None


def _sniff(body: bytes) -> str:
    """A few words on what a body that is not a result looks like, for the outbox's error."""
    text = body.lstrip()[:64].decode("utf-8", "replace")
    if not text:
        return "empty"
    if text[:1] == "<":
        return "HTML or XML: " + " ".join(text.split())
    return " ".join(text.split())


def _detail(http_status: int, code: int | None, message: str | None) -> str:
    parts = [f"HTTP {http_status}"]
    if code is not None:
        parts.append(f"code {code} ({codes.describe(code)})")
    text = ", ".join(parts)
    if message:
        message = " ".join(message.split())
        if len(message) > _DETAIL_CHARS:
            message = message[:_DETAIL_CHARS] + "..."
        text += f": {message}"
    return text
