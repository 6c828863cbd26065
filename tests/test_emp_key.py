"""An EMP that refuses our key (HTTP 401 / code 210) is unusable, not each message: its
delivery pauses with back-off (30 s doubling to 10 minutes, then one message probes), its
messages stay pending instead of dying one by one, /healthz says "degraded" naming it, and a
reload with the right key resumes delivery at once.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.delivery import PAUSE_BASE_S, PAUSE_MAX_S
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import OUTBOUND_KEY, running_gateway, write_config
from tests.test_outbox_delivery import Rig, cdr_row, rig  # noqa: F401  (rig: a fixture)
from tests.test_outbox_e2e import outbox_rows, until


async def test_a_refused_key_pauses_the_emp_and_keeps_its_messages(rig: Rig) -> None:  # noqa: F811
    concurrency = 4
    d = rig.deliverer(concurrency=concurrency)
    await rig.store.enqueue([cdr_row(f"s-{i}") for i in range(20)], rig.clock())
    rig.emp.fail_next(concurrency + 1, 401, code=210)

    assert await d.tick() == 0
    assert "sandbox" in d.paused and "HTTP 401, code 210" in d.paused["sandbox"]
    sent = len(rig.emp.requests)
    assert sent <= concurrency, "only what was already in flight reaches the EMP"
    rows = await rig.rows()
    assert {r["state"] for r in rows} == {"pending"} and d.dead == 0
    assert all(r["attempts"] == 0 for r in rows), "a refused key is not the message's fault"

    rig.clock.now += PAUSE_BASE_S / 2
    assert await d.tick() == 0 and len(rig.emp.requests) == sent  # paused: nothing sent
    rig.clock.now += PAUSE_BASE_S
    assert await d.tick() == 0
    assert len(rig.emp.requests) == sent + 1, "one message probes after the pause"
    rig.clock.now += PAUSE_BASE_S + 1  # the second pause is twice as long
    assert await d.tick() == 0 and len(rig.emp.requests) == sent + 1
    rig.clock.now += PAUSE_MAX_S
    assert await d.tick() == 1  # the probe gets through (the faults are used up)
    assert d.paused == {}
    rig.clock.now += 1
    assert await d.tick() == 19
    assert len(rig.emp.cdrs) == 20 and d.dead == 0


async def test_a_wrong_key_is_degraded_health_until_a_reload_fixes_it(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    path = write_config(tmp_path, emp_url=emp.url)
    path.write_text(path.read_text().replace(f'api_key = "{OUTBOUND_KEY}"', 'api_key = "wrong"'))
    gateway = Gateway(load_config(path, {}), load=lambda: load_config(path, {}))
    async with running_gateway(gateway, emp) as h:
        await emp.wait_for(lambda: any(r.answered_code == 210 for r in emp.requests))
        async with aiohttp.ClientSession() as http, http.get(h.base_url + "/healthz") as r:
            body = await r.json()
        assert r.status == 200 and body["status"] == "degraded"
        assert "sandbox" in body["degraded"] and "refuses our key" in body["degraded"]["sandbox"]
        rows = await outbox_rows(h, "station")
        assert len(rows) == 3 and {row["state"] for row in rows} == {"pending"}

        path.write_text(
            path.read_text().replace('api_key = "wrong"', f'api_key = "{OUTBOUND_KEY}"')
        )
        assert await gateway.reload() is True
        await emp.wait_for(lambda: len(emp.stations) == 3)

        async def delivered() -> bool:
            rows = await outbox_rows(h, "station")
            return {row["state"] for row in rows} == {"delivered"}

        await until(delivered)
        async with aiohttp.ClientSession() as http, http.get(h.base_url + "/healthz") as r:
            body = await r.json()
        assert body["status"] == "ok" and body["degraded"] == {}
