"""Pagination of OCPI GET lists: parameters, pages, headers, edges, and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.ocpi.pagination import (
    Page,
    PageError,
    PageRequest,
    page_headers,
    paginate,
    parse_datetime,
    parse_page,
)
from tests.conftest import examples

T0 = datetime(2026, 3, 1, tzinfo=UTC)
URL = "http://127.0.0.1:8081/ocpi/cpo/2.2.1/cdrs"
PARAMETERS = ("offset", "limit", "date_from", "date_to")


def _objects(n: int) -> list[tuple[int, datetime]]:
    return [(i, T0 + timedelta(minutes=i)) for i in range(n)]


def _when(o: tuple[int, datetime]) -> datetime:
    return o[1]


def test_defaults_and_the_server_maximum() -> None:
    assert parse_page({}, max_limit=100) == PageRequest(0, 100)
    assert parse_page({"limit": "5000"}, max_limit=100).limit == 100
    assert parse_page({"offset": "7", "limit": "3"}) == PageRequest(7, 3)


def test_dates_are_utc_and_naive_means_utc() -> None:
    assert parse_datetime("date_from", "2026-03-01T10:00:00") == datetime(
        2026, 3, 1, 10, tzinfo=UTC
    )
    assert parse_datetime("date_from", "2026-03-01T12:00:00+02:00") == datetime(
        2026, 3, 1, 10, tzinfo=UTC
    )
    assert parse_datetime("date_to", "2026-03-01T10:00:00.5Z").microsecond == 500000


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"offset": "-1"}, "offset"),
        ({"offset": "1.5"}, "offset"),
        ({"limit": ""}, "limit"),
        ({"limit": "9999999999"}, "limit"),
        ({"date_from": "2026-03-01"}, "date_from"),
        ({"date_from": "2026-02-30T10:00:00Z"}, "date_from"),
        ({"date_to": "tomorrow"}, "date_to"),
        ({"date_from": "2026-03-02T00:00:00Z", "date_to": "2026-03-01T00:00:00Z"}, "date_to"),
    ],
)
def test_bad_parameters_name_themselves(query: dict[str, str], parameter: str) -> None:
    with pytest.raises(PageError) as info:
        parse_page(query)
    assert info.value.parameter == parameter and str(info.value).startswith(parameter + ":")


def test_date_from_is_inclusive_and_date_to_exclusive() -> None:
    objects = _objects(10)
    req = PageRequest(0, 100, T0 + timedelta(minutes=2), T0 + timedelta(minutes=5))
    page = paginate(objects, req, _when)
    assert [o[0] for o in page.items] == [2, 3, 4] and page.total == 3
    same = PageRequest(0, 100, T0, T0)
    assert paginate(objects, same, _when).total == 0


def test_edges_limit_zero_offset_past_the_end_and_the_last_page() -> None:
    objects = _objects(5)
    counted = paginate(objects, PageRequest(0, 0), _when)
    assert counted.items == [] and counted.total == 5
    assert page_headers(counted, URL, {"limit": "0"}) == {"X-Total-Count": "5", "X-Limit": "0"}
    past = paginate(objects, PageRequest(9, 2), _when)
    assert past.items == [] and "Link" not in page_headers(past, URL, {})
    last = paginate(objects, PageRequest(4, 2), _when)
    assert [o[0] for o in last.items] == [4] and "Link" not in page_headers(last, URL, {})
    exact = paginate(objects, PageRequest(3, 2), _when)
    assert "Link" not in page_headers(exact, URL, {})  # ends exactly at the total
    first = page_headers(paginate(objects, PageRequest(0, 2), _when), URL, {"limit": "2"})
    assert first["Link"] == f'<{URL}?offset=2&limit=2>; rel="next"'


def test_the_link_keeps_the_filters() -> None:
    query = {"date_from": "2026-03-01T00:00:00Z", "offset": "0", "limit": "2"}
    req = parse_page(query)
    headers = page_headers(paginate(_objects(5), req, _when), URL, query)
    link = headers["Link"]
    params = parse_qs(urlsplit(link[1 : link.index(">")]).query)
    assert params == {"date_from": ["2026-03-01T00:00:00Z"], "offset": ["2"], "limit": ["2"]}


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(st.sampled_from([*PARAMETERS, "other"]), st.text(max_size=40), max_size=5))
def test_any_query_parses_or_names_the_parameter(query: dict[str, str]) -> None:
    try:
        req = parse_page(query, max_limit=50)
    except PageError as exc:
        assert exc.parameter in PARAMETERS
    else:
        assert req.offset >= 0 and 0 <= req.limit <= 50


@settings(max_examples=examples(200), deadline=None)
@given(
    st.integers(0, 60),
    st.integers(1, 25),
    st.integers(1, 30),
    st.one_of(st.none(), st.integers(0, 70)),
    st.one_of(st.none(), st.integers(0, 70)),
)
def test_following_links_yields_every_match_once_in_order(
    n: int, limit: int, max_limit: int, frm: int | None, to: int | None
) -> None:
    objects = _objects(n)
    query = {"limit": str(limit)}
    if frm is not None:
        query["date_from"] = (T0 + timedelta(minutes=frm)).isoformat()
    if to is not None:
        query["date_to"] = (T0 + timedelta(minutes=to)).isoformat()
    try:
        req = parse_page(query, max_limit=max_limit)
    except PageError as exc:
        assert frm is not None and to is not None and frm > to and exc.parameter == "date_to"
        return
    expected = [o for o in objects if req.matches(o[1])]
    seen: list[tuple[int, datetime]] = []
    for _ in range(n + 2):  # bounded: at most one page per object, plus the last
        page: Page[tuple[int, datetime]] = paginate(objects, req, _when)
        headers = page_headers(page, URL, query)
        assert headers["X-Total-Count"] == str(len(expected))
        assert headers["X-Limit"] == str(min(limit, max_limit))
        assert len(page.items) <= min(limit, max_limit)
        seen.extend(page.items)
        if "Link" not in headers:
            break
        link = headers["Link"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(link[1 : link.index(">")]).query).items()}
        req = parse_page(query, max_limit=max_limit)
    assert seen == expected
