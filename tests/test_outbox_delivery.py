"""The delivery policy with a fake clock: a real Store on a tmp SQLite file, the real EMP client
and the sandbox EMP on a real socket. Time only moves when the test moves it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.bridge.cdr import cdr_to_dict
from cpo_gateway.bridge.delivery import Deliverer, backoff_s
from cpo_gateway.bridge.model import Cdr, Delivery, Interval, Place, User, UserKind
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.bridge.station_sync import digest, station_payload
from cpo_gateway.oioi.client import EmpClients, Endpoint
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.stations import load_stations
from cpo_gateway.store import Store
from tests.conftest import EXAMPLE_STATIONS, OUTBOUND_KEY, PARTNER
from tests.storage import make_database

T0 = 1_800_000_000.0
HOUR = 3600.0
CATALOGUE = load_stations(EXAMPLE_STATIONS)
STATION = CATALOGUE.stations[0]
EVSE = STATION.connectors[0].evse_id


@dataclass
class FakeClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


class CountingLink:
    """The real client, counting how many deliveries run at once."""

    def __init__(self, inner: EmpClients) -> None:
        self.inner = inner
        self.active = 0
        self.peak = 0

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> Any:
        return await self.inner.verify(emp, uid, place)

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await self.inner.deliver(emp, kind, payload)
        finally:
            self.active -= 1


@dataclass
class Rig:
    store: Store
    emp: SandboxEmp
    clock: FakeClock
    link: CountingLink

    def deliverer(self, *, batch_size: int = 50, concurrency: int = 4) -> Deliverer:
        def station_of(evse_id: str) -> str | None:
            found = CATALOGUE.station_of(evse_id)
            return None if found is None else found.id

        return Deliverer(
            self.store,
            self.link,
            station_of_evse=station_of,
            base_backoff_s=2.0,
            max_backoff_s=HOUR,
            retry_window_s=48 * HOUR,
            batch_size=batch_size,
            concurrency={"sandbox": concurrency},
            clock=self.clock,
            rand=lambda: 0.5,
        )

    async def rows(self) -> list[dict[str, Any]]:
        rows = await self.store.db.all("SELECT * FROM outbox ORDER BY id")
        return [dict(r) for r in rows]


@pytest.fixture
async def rig(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[Rig]:
    db = make_database(tmp_path / "gateway.sqlite3")
    await db.open()
    clock = FakeClock()
    clients = EmpClients(
        [Endpoint("sandbox", emp.url, OUTBOUND_KEY, request_timeout_s=5.0)], clock=clock
    )
    await clients.start()
    try:
        yield Rig(Store(db), emp, clock, CountingLink(clients))
    finally:
        await clients.close()
        await db.close()


def cdr_row(session_id: str, stop: str | None = "2027-01-15T08:00:00+00:00") -> NewOutbox:
    cdr = Cdr(
        session_id=session_id,
        evse_id=EVSE,
        user=User(UserKind.EVCO_ID, "DE-8PS-C12345-6"),
        session_interval=Interval("2027-01-15T07:00:00+00:00", stop),
        partner_identifier=PARTNER,
        energy_kwh=1.5 if stop else None,
    )
    return NewOutbox("sandbox", "cdr", session_id, cdr_to_dict(cdr))


def status_row(status: str) -> NewOutbox:
    payload = {"evse_id": EVSE, "status": status, "partner_identifier": PARTNER}
    return NewOutbox("sandbox", "evse-status", EVSE, payload)


async def post_station(rig: Rig) -> None:
    row = NewOutbox("sandbox", "station", STATION.id, station_payload(STATION, PARTNER, False))
    await rig.store.queue_station("sandbox", STATION.id, digest(STATION), False, row, rig.clock())


def test_backoff_is_full_jitter_capped() -> None:
    assert backoff_s(0, 2.0, 60.0, lambda: 1.0) == 2.0
    assert backoff_s(3, 2.0, 60.0, lambda: 1.0) == 16.0
    assert backoff_s(30, 2.0, 60.0, lambda: 1.0) == 60.0
    assert backoff_s(10_000, 2.0, 60.0, lambda: 0.25) == 15.0
    assert backoff_s(5, 2.0, 60.0, lambda: 0.0) == 0.0


@pytest.mark.parametrize("retry_after", ["120", "HTTP-DATE"])
async def test_retry_after_is_a_floor(rig: Rig, retry_after: str) -> None:
    if retry_after == "HTTP-DATE":
        retry_after = format_datetime(datetime.fromtimestamp(T0 + 120, UTC), usegmt=True)
    await rig.store.enqueue([cdr_row("s-1")], rig.clock())
    rig.emp.fail_next(1, 503, retry_after=retry_after)
    assert await rig.deliverer().tick() == 0
    (row,) = await rig.rows()
    # The back-off alone would be 0.5 * 2 s; the EMP asked for two minutes.
    assert row["next_at"] >= T0 + 120
    assert (row["state"], row["attempts"]) == ("pending", 1)
    rig.clock.now = T0 + 119
    assert await rig.deliverer().tick() == 0
    assert len(rig.emp.requests) == 1  # not due yet: nothing sent
    rig.clock.now = T0 + 120
    assert await rig.deliverer().tick() == 1
    assert "s-1" in rig.emp.cdrs


async def test_a_long_back_off_is_not_shortened_by_retry_after(rig: Rig) -> None:
    await rig.store.enqueue([cdr_row("s-1")], rig.clock())
    await rig.store.db.write("UPDATE outbox SET attempts = 10", ())
    rig.emp.fail_next(1, 429, retry_after="1")
    await rig.deliverer().tick()
    (row,) = await rig.rows()
    assert row["next_at"] == T0 + 0.5 * min(HOUR, 2.0 * 2**10)


@pytest.mark.parametrize(
    ("status", "code"), [(408, 102), (425, 200), (429, 200), (500, 100), (503, 100), (504, 402)]
)
async def test_transient_answers_are_retried(rig: Rig, status: int, code: int) -> None:
    await rig.store.enqueue([cdr_row("s-1")], rig.clock())
    rig.emp.fail_next(1, status, code=code)
    await rig.deliverer().tick()
    (row,) = await rig.rows()
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith(f"HTTP {status}")


async def test_connection_refused_is_retried(rig: Rig) -> None:
    await rig.store.enqueue([cdr_row("s-1")], rig.clock())
    await rig.emp.refuse()
    await rig.deliverer().tick()
    (row,) = await rig.rows()
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert "Connect" in row["last_error"]


# 401 / 210 is about our key, not the message: see tests/test_emp_key.py.
@pytest.mark.parametrize(("status", "code"), [(400, 230), (403, 220), (404, 180)])
async def test_other_client_errors_go_to_dead_letters_at_once(
    rig: Rig, status: int, code: int
) -> None:
    await rig.store.enqueue([cdr_row("s-1")], rig.clock())
    rig.emp.fail_next(1, status, code=code)
    d = rig.deliverer()
    await d.tick()
    (row,) = await rig.rows()
    assert (row["state"], row["attempts"], d.dead) == ("dead", 1, 1)
    assert row["last_error"].startswith(f"HTTP {status}, code {code}")


async def test_a_48_hour_outage_ends_in_dead_letters(rig: Rig) -> None:
    await rig.store.enqueue([cdr_row("s-1"), cdr_row("s-2")], rig.clock())
    await rig.emp.refuse()
    d = rig.deliverer()
    for _ in range(500):  # bounded: ~50 attempts each at a one-hour cap
        due = await rig.store.next_due_at("sandbox")
        if due is None:
            break
        rig.clock.now = max(rig.clock.now, due)
        await d.tick()
    rows = await rig.rows()
    assert [r["state"] for r in rows] == ["dead", "dead"]
    for r in rows:
        assert "retry window exceeded" in r["last_error"]
        assert r["done_at"] - r["created_at"] >= 48 * HOUR
        assert r["attempts"] > 10
    assert await rig.store.list_outbox("dead") != []


async def test_a_backlog_drains_batch_size_per_tick(rig: Rig) -> None:
    await rig.store.enqueue([cdr_row(f"s-{i}") for i in range(23)], rig.clock())
    d = rig.deliverer(batch_size=10)
    assert [await d.tick() for _ in range(4)] == [10, 10, 3, 0]
    assert len(rig.emp.cdrs) == 23


async def test_deliveries_per_emp_respect_the_concurrency_limit(rig: Rig) -> None:
    await rig.store.enqueue([cdr_row(f"s-{i}") for i in range(8)], rig.clock())
    rig.emp.set_delay(0.1)
    d = rig.deliverer(batch_size=8, concurrency=2)
    assert await d.tick() == 8
    assert rig.link.peak == 2


async def test_session_posts_of_one_session_stay_in_order(rig: Rig) -> None:
    # A CDR at start (no stop time) and the final one; the first fails once.
    await rig.store.enqueue([cdr_row("s-1", stop=None), cdr_row("s-1")], rig.clock())
    await rig.store.enqueue([cdr_row("s-2")], rig.clock())
    rig.emp.fail_next(1, 503)
    d = rig.deliverer()
    await d.tick()
    # s-2 went out; the final s-1 waits behind the failed first one.
    sent = [c["session-id"] for c in rig.emp.calls("session-post")]
    assert sent == ["s-1", "s-2"]
    rig.clock.now += HOUR
    await d.tick()
    await d.tick()
    bodies = [c for c in rig.emp.calls("session-post") if c["session-id"] == "s-1"]
    assert ["stop" in b["session-interval"] for b in bodies] == [False, False, True]
    assert rig.emp.cdrs["s-1"]["session-interval"]["stop"]


async def test_statuses_are_coalesced_per_evse_and_emp(rig: Rig) -> None:
    for status in ("Occupied", "Reserved", "Offline", "Available"):
        await rig.store.enqueue([status_row(status)], rig.clock())
    rows = await rig.rows()
    assert len(rows) == 1 and rows[0]["payload"].count("Available") == 1


async def test_a_status_rewritten_while_in_flight_is_sent_again(rig: Rig) -> None:
    await post_station(rig)
    await rig.deliverer().tick()
    await rig.store.enqueue([status_row("Occupied")], rig.clock())
    (item,) = await rig.store.due("sandbox", rig.clock(), 10)
    # A newer status arrives while "Occupied" is on its way.
    await rig.store.enqueue([status_row("Available")], rig.clock())
    await rig.store.mark_delivered([item.id], rig.clock())
    (row,) = [r for r in await rig.rows() if r["kind"] == "evse-status"]
    assert row["state"] == "pending" and "Available" in row["payload"]
    await rig.deliverer().tick()
    assert rig.emp.statuses[EVSE] == "Available"


async def test_a_station_is_posted_in_the_commit_that_marks_its_post_delivered(
    rig: Rig,
) -> None:
    await post_station(rig)
    (first,) = await rig.store.due("sandbox", rig.clock(), 10)
    # A newer version queued while the first is on its way: the EMP lacks the current one.
    await post_station(rig)
    await rig.store.mark_delivered([first.id], rig.clock())
    assert STATION.id not in await rig.store.delivered_stations("sandbox")
    newer = [i for i in await rig.store.due("sandbox", rig.clock(), 10) if i.id != first.id]
    await rig.store.mark_delivered([i.id for i in newer], rig.clock())
    assert await rig.store.delivered_stations("sandbox") == {STATION.id}


async def test_statuses_wait_for_the_station_post(rig: Rig) -> None:
    await post_station(rig)
    await rig.store.enqueue([status_row("Available")], rig.clock())
    rig.emp.fail_call("station-post", 500)
    d = rig.deliverer()
    await d.tick()
    assert rig.emp.calls("connector-post-status") == []
    rows = {r["kind"]: r for r in await rig.rows()}
    assert rows["evse-status"]["last_error"] == "waiting for its station to be posted"
    assert rows["evse-status"]["attempts"] == 0
    rig.clock.now += HOUR
    await d.tick()  # the station goes out
    rig.clock.now += HOUR
    await d.tick()
    assert rig.emp.statuses == {EVSE: "Available"}
    kinds = [r.call for r in rig.emp.requests if r.answered_status == 200]
    assert kinds == ["station-post", "connector-post-status"]


async def test_a_status_for_an_evse_of_no_station_is_dead(rig: Rig) -> None:
    row = NewOutbox(
        "sandbox",
        "evse-status",
        "DE*CPO*E9999*9",
        {"evse_id": "DE*CPO*E9999*9", "status": "Available", "partner_identifier": PARTNER},
    )
    await rig.store.enqueue([row], rig.clock())
    await rig.deliverer().tick()
    (r,) = await rig.rows()
    assert r["state"] == "dead" and "no station" in r["last_error"]
    assert rig.emp.requests == []
