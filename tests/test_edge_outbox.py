"""What counts as delivered, and what a crash in the middle of a delivery pass re-sends.

- Only a parseable OIOI result with a success code is a delivery: a 200 with an HTML page (a
  proxy or captive portal) or an empty body is retried with back-off and, past the retry
  window, dead-lettered, never dropped as delivered.
- Each delivery is marked as soon as its answer is in (answers arriving together share one
  group commit), so a SIGKILL during a pass against a slow EMP re-sends only the requests in
  flight at that moment, not the whole pass.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cpo_gateway.bench.soak import gateway as soak_gateway
from cpo_gateway.bridge.cdr import cdr_to_dict
from cpo_gateway.bridge.model import Cdr, Interval, User, UserKind
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.store import Store
from tests.storage import make_database
from tests.test_outbox_delivery import HOUR, Rig, cdr_row, rig  # noqa: F401  (rig: a fixture)

PROXY_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Wi-Fi</body></html>"


async def test_a_200_with_an_html_page_is_retried_until_the_emp_answers(rig: Rig) -> None:  # noqa: F811
    deliverer = rig.deliverer()
    await rig.store.enqueue([cdr_row("s-html")], rig.clock())
    rig.emp.fail_next(2, 200, body=PROXY_PAGE)
    assert await deliverer.tick() == 0
    (row,) = await rig.rows()
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert "no OIOI result in the body (HTML or XML" in row["last_error"]
    rig.clock.now += HOUR
    assert await deliverer.tick() == 0  # the second proxy page
    rig.clock.now += HOUR
    assert await deliverer.tick() == 1  # the EMP itself
    (row,) = await rig.rows()
    assert row["state"] == "delivered"
    assert list(rig.emp.cdrs) == ["s-html"] and rig.emp.duplicates == 0
    assert len(rig.emp.calls("session-post")) == 3


async def test_a_200_that_never_carries_a_result_ends_as_a_dead_letter(rig: Rig) -> None:  # noqa: F811
    deliverer = rig.deliverer()
    await rig.store.enqueue([cdr_row("s-empty")], rig.clock())
    rig.emp.fail_next(10_000, 200, body=b"")
    for _ in range(60):  # an hour apart: the 48 h window closes on the way
        await deliverer.tick()
        rig.clock.now += HOUR
        if (await rig.rows())[0]["state"] != "pending":
            break
    (row,) = await rig.rows()
    assert row["state"] == "dead", "the CDR must stay visible, not vanish as delivered"
    assert "retry window exceeded" in row["last_error"] and "(empty)" in row["last_error"]
    assert rig.emp.cdrs == {}


async def test_each_delivery_is_marked_as_soon_as_its_answer_is_in(rig: Rig) -> None:  # noqa: F811
    concurrency = 4
    deliverer = rig.deliverer(batch_size=500, concurrency=concurrency)
    await rig.store.enqueue([cdr_row(f"s-{i:03d}") for i in range(60)], rig.clock())
    rig.emp.set_delay(0.05)
    pass_task = asyncio.create_task(deliverer.tick())
    try:
        await rig.emp.wait_for(lambda: len(rig.emp.calls("session-post")) >= 30, timeout=30)
        received = len(rig.emp.calls("session-post"))
        delivered = [r for r in await rig.rows() if r["state"] == "delivered"]
        # Mid-pass: everything answered is already committed, bar the few in flight.
        assert len(delivered) >= received - 2 * concurrency > 0
    finally:
        pass_task.cancel()
        await asyncio.gather(pass_task, return_exceptions=True)


def _cdr(session_id: str) -> NewOutbox:
    cdr = Cdr(
        session_id=session_id,
        evse_id=soak_gateway.evse_id(1, 1),
        user=User(UserKind.RFID, "0A0B0C0D"),
        session_interval=Interval("2027-01-15T07:00:00+00:00", "2027-01-15T08:00:00+00:00"),
        partner_identifier=soak_gateway.PARTNER,
        energy_kwh=2.5,
    )
    return NewOutbox("sandbox", "cdr", session_id, cdr_to_dict(cdr))


async def test_a_sigkill_mid_pass_re_sends_only_what_was_in_flight(tmp_path: Path) -> None:
    sessions = 120
    emp = SandboxEmp(api_key=soak_gateway.OUTBOUND_KEY)
    async with emp:
        ocpp_port, oioi_port = soak_gateway.free_port(), soak_gateway.free_port()
        config = soak_gateway.write_config(
            tmp_path, emp_url=emp.url, chargers=1, ocpp_port=ocpp_port, oioi_port=oioi_port
        )
        # A backlog written before the daemon starts: its first pass takes all of it.
        db = make_database(tmp_path / "state" / "gateway.db")
        await db.open()
        try:
            await Store(db).enqueue([_cdr(f"kill-{i:04d}") for i in range(sessions)], 0.0)
        finally:
            await db.close()
        emp.set_delay(0.05)  # a slow EMP: the pass lasts well over a second
        gateway = soak_gateway.GatewayProcess(
            config, ocpp_port, oioi_port, tmp_path / "gateway.log"
        )
        await gateway.start()
        try:
            await emp.wait_for(lambda: len(emp.calls("session-post")) >= 40, timeout=60)
            await gateway.kill()
            sent_before_kill = len(emp.calls("session-post"))
            emp.set_delay(0.0)
            await gateway.start()
            await emp.wait_for(lambda: len(emp.cdrs) == sessions, timeout=60)
        finally:
            await gateway.terminate()
    assert sent_before_kill < sessions, "the kill must land in the middle of the pass"
    # The default concurrency is 4: what was in flight (and answered but not yet committed)
    # is sent again, never the whole pass as before (tens of duplicates).
    assert emp.duplicates <= 8, f"{emp.duplicates} duplicate session-posts after one SIGKILL"
    assert len(emp.cdrs) == sessions
