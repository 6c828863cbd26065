"""Pagination of OCPI GET list requests (transport_and_format, "Pagination").

A list request may carry `offset` (default 0), `limit` (default and ceiling: the server's
maximum; a larger one is lowered to it), `date_from` (inclusive) and `date_to` (exclusive),
both on the objects' `last_updated`. The answer carries `X-Total-Count` (the objects that
match the dates, whatever the offset and limit), `X-Limit` (the limit applied) and, unless
the page is the last, `Link: <url>; rel="next"` with the same filters and the next offset.

Edges, decided here once: an offset past the end is an empty page (no Link); `limit=0` is an
empty page that still counts (X-Total-Count) and has no Link (it would never advance);
`date_from` after `date_to` is refused, as are unreadable dates and numbers, each naming the
parameter (OCPI 2001).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from cpo_gateway.ocpi.transport import OcpiError, OcpiStatus, ocpi_json_response

T = TypeVar("T")

DEFAULT_MAX_LIMIT = 100
_DIGITS = re.compile(r"[0-9]{1,9}")
# RFC 3339 as OCPI writes it: a date, 'T', a time, optional fraction, optional Z or offset
# (none means UTC).
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?"
)


class PageError(ValueError):
    """A pagination parameter that cannot be used; `parameter` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class PageRequest:
    offset: int
    limit: int
    date_from: datetime | None = None
    date_to: datetime | None = None

    def matches(self, last_updated: datetime) -> bool:
        if self.date_from is not None and last_updated < self.date_from:
            return False
        return self.date_to is None or last_updated < self.date_to


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    total: int
    request: PageRequest

    @property
    def next_offset(self) -> int | None:
        """The next page's offset, None on the last page."""
        after = self.request.offset + len(self.items)
        if self.request.limit == 0 or not self.items or after >= self.total:
            return None
        return after


def parse_datetime(parameter: str, value: str) -> datetime:
    """An OCPI DateTime (naive means UTC), aware in UTC; PageError naming `parameter`."""
    text = value.strip()
    if len(text) > 40 or not _DATETIME.fullmatch(text):
        raise PageError(
            parameter,
            f"expected an RFC 3339 date-time like 2026-01-31T12:00:00Z, got {value[:40]!r}",
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PageError(parameter, f"not a valid date-time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _count(parameter: str, value: str) -> int:
    if not _DIGITS.fullmatch(value.strip()):
        raise PageError(parameter, f"expected a whole number >= 0, got {value[:40]!r}")
    return int(value)


def parse_page(query: Mapping[str, str], *, max_limit: int = DEFAULT_MAX_LIMIT) -> PageRequest:
    """The pagination parameters of a list request's query string."""
    offset = _count("offset", query["offset"]) if "offset" in query else 0
    limit = _count("limit", query["limit"]) if "limit" in query else max_limit
    date_from = parse_datetime("date_from", query["date_from"]) if "date_from" in query else None
    date_to = parse_datetime("date_to", query["date_to"]) if "date_to" in query else None
    if date_from is not None and date_to is not None and date_from > date_to:
        raise PageError("date_to", "must not be before date_from")
    return PageRequest(offset, min(limit, max_limit), date_from, date_to)


def paginate(
    objects: Sequence[T], request: PageRequest, last_updated: Callable[[T], datetime]
) -> Page[T]:
    """One page of `objects` (in their order) that match the request's dates."""
    matching = [o for o in objects if request.matches(last_updated(o))]
    items = matching[request.offset : request.offset + request.limit] if request.limit else []
    return Page(items, len(matching), request)


def page_headers(page: Page[Any], url: str, query: Mapping[str, str]) -> dict[str, str]:
    """X-Total-Count, X-Limit and (unless last) Link for `page` of the list at `url` (the
    public URL partners call, without a query); `query` is the request's, kept as filters."""
    headers = {"X-Total-Count": str(page.total), "X-Limit": str(page.request.limit)}
    nxt = page.next_offset
    if nxt is not None:
        params = {k: v for k, v in query.items() if k not in ("offset", "limit")}
        params |= {"offset": str(nxt), "limit": str(page.request.limit)}
        headers["Link"] = f'<{url}?{urlencode(params)}>; rel="next"'
    return headers


def list_response(
    request: web.Request,
    objects: Sequence[T],
    last_updated: Callable[[T], datetime],
    render: Callable[[T], Any],
    url: str,
    *,
    max_limit: int = DEFAULT_MAX_LIMIT,
) -> web.Response:
    """The OCPI answer to a GET list: one page of `objects` (rendered), with its headers; a
    bad parameter is 2001 naming it."""
    try:
        wanted = parse_page(request.query, max_limit=max_limit)
    except PageError as exc:
        raise OcpiError(OcpiStatus.INVALID_PARAMETERS, str(exc), 400) from None
    page = paginate(objects, wanted, last_updated)
    headers = page_headers(page, url, request.query)
    return ocpi_json_response([render(o) for o in page.items], headers=headers)
