"""An implausible CDR is held, not sent: the stop is still acknowledged, the session is left
as needs_review with its reason in the same commit, no outbox row is written, /metrics counts
it, and the CLI lists, releases or corrects it against the database of a running gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER, Harness, running_gateway, write_config
from tests.test_oioi_whitelist import cli

CARD = "0A0B0C0D"


async def _metrics(h: Harness) -> str:
    async with aiohttp.ClientSession() as http, http.get(h.base_url + "/metrics") as r:
        assert r.status == 200
        return await r.text()


async def _cdr_rows(h: Harness) -> list[dict[str, Any]]:
    rows = await h.store.db.all("SELECT * FROM outbox WHERE kind = 'cdr' ORDER BY id")
    return [dict(r) for r in rows]


async def test_absurd_energy_is_held_listed_and_corrected(harness: Harness) -> None:
    h, emp = harness, harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3)
    async with h.client() as client:
        await client.rfid_post(PARTNER, [CARD])
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with h.charger("CP-BER-001") as cp:
        await cp.connect()
        absurd = await cp.start_transaction(1, CARD, meter_start=0, timestamp=started)
        conf = await cp.stop_transaction(absurd, 10**12)  # 1e12 Wh in 30 min on 22 kW
        assert conf is not None  # the charger is answered all the same
        backwards = await cp.start_transaction(2, CARD, meter_start=9000, timestamp=started)
        assert await cp.stop_transaction(backwards, 4000) is not None
    held = await h.store.list_sessions(10, "needs_review")
    assert len(held) == 2
    by_evse = {s.evse_id: s for s in held}
    absurd_s, backwards_s = by_evse["DE*CPO*E1001*1"], by_evse["DE*CPO*E1001*2"]
    assert absurd_s.detail is not None and "above" in absurd_s.detail
    assert backwards_s.detail is not None and "negative energy" in backwards_s.detail
    assert await _cdr_rows(h) == []  # nothing queued for the EMP
    assert "cpo_gateway_sessions_needing_review 2" in await _metrics(h)

    config = h.gateway.config.path
    code, out, err = await cli(config, "sessions", "review")
    assert code == 0, err
    assert absurd_s.id in out and "above" in out and "2 session(s) need review" in out

    # A correction that is still implausible is refused and changes nothing.
    code, _, err = await cli(config, "sessions", "correct", absurd_s.id, "--kwh", "500")
    assert code == 1 and "still implausible" in err
    code, out, err = await cli(config, "sessions", "correct", absurd_s.id, "--kwh", "9.5")
    assert code == 0, err
    code, out, err = await cli(config, "sessions", "release", backwards_s.id)
    assert code == 0, err
    code, _, err = await cli(config, "sessions", "release", backwards_s.id)
    assert code == 1 and "no session held for review" in err

    await emp.wait_for(lambda: len(emp.cdrs) == 2, timeout=10)
    assert emp.cdrs[absurd_s.id]["energy-consumed"] == 9.5
    assert "cpo_gateway_sessions_needing_review 0" in await _metrics(h)
    after = await h.store.session(absurd_s.id)
    assert after is not None and after.state == "finished"
    assert after.detail is not None and "corrected to 9.5 kWh" in after.detail


async def test_a_plausible_cdr_still_leaves(harness: Harness) -> None:
    h, emp = harness, harness.emp
    await emp.wait_for(lambda: len(emp.stations) == 3)
    async with h.client() as client:
        await client.rfid_post(PARTNER, [CARD])
    started = datetime.now(UTC) - timedelta(hours=1)
    async with h.charger("CP-BER-001") as cp:
        await cp.connect()
        tx = await cp.start_transaction(1, CARD, meter_start=1000, timestamp=started)
        assert await cp.stop_transaction(tx, 21_000) is not None  # 20 kWh in 1 h on 22 kW
    await emp.wait_for(lambda: len(emp.cdrs) == 1, timeout=10)
    (cdr,) = emp.cdrs.values()
    assert cdr["energy-consumed"] == 20.0
    assert await h.store.list_sessions(10, "needs_review") == []


async def test_a_start_stamped_by_an_unset_clock_sends_no_start_post_and_is_held(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    config = write_config(tmp_path, emp_url=emp.url, sessions="cdr_on_start = true")
    async with running_gateway(Gateway(load_config(config, {})), emp) as h:
        await emp.wait_for(lambda: len(emp.stations) == 3)
        async with h.client() as client:
            await client.rfid_post(PARTNER, [CARD])
        unset = datetime(2000, 1, 1, tzinfo=UTC)  # a charger clock never set after boot
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            tx = await cp.start_transaction(1, CARD, meter_start=0, timestamp=unset)
            assert tx > 0  # answered all the same
            assert await _cdr_rows(h) == []  # the first session-post was not sent
            assert await cp.stop_transaction(tx, 500) is not None
        (held,) = await h.store.list_sessions(10, "needs_review")
        assert held.detail is not None and "before 2010" in held.detail
        assert await _cdr_rows(h) == []
