"""The console in a real browser (Playwright driving Debian's chromium, headless) against a real
gateway, a simulated charger and the sandbox EMP, all on loopback port 0.

scripts/browser-setup installs chromium; without it these tests skip, except under CI (the
CI variable set), where a missing browser is a failure. CPO_GATEWAY_SCREENSHOT=<path> saves
the chargers page there (the README's picture).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import Harness
from tests.test_console_support import OPERATOR, PASSWORD, console_gateway, console_url

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"
WAIT_MS = 10_000  # every wait for the page is bounded by this

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI: chromium is missing; scripts/browser-setup installs it")
    pytest.skip(
        "chromium is not installed (scripts/browser-setup installs it as root)",
        allow_module_level=True,
    )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        # --no-sandbox: chromium's sandbox refuses to run as root (CI containers).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield launched
        finally:
            await launched.close()


async def _logged_in(browser: Browser, h: Harness) -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 700})
    page.set_default_timeout(WAIT_MS)
    await page.goto(console_url(h) + "/chargers")
    await expect(page).to_have_url(console_url(h) + "/login")
    await page.fill("input[name=name]", OPERATOR)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("text=Log in")
    await expect(page).to_have_url(console_url(h) + "/chargers")
    return page


async def _transaction_on(cp: SimCharger, connector: int) -> int:
    for _ in range(500):
        tx = cp.transaction_id(connector)
        if tx is not None:
            return tx
        await asyncio.sleep(0.02)
    raise AssertionError(f"no transaction began on connector {connector} within 10 s")


async def _until_delivered(h: Harness, row_id: int) -> None:
    for _ in range(500):
        item = await h.store.outbox_item(row_id)
        if item is not None and item.state == "delivered":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"outbox row {row_id} was not delivered within 10 s")


async def test_an_operator_watches_a_charger_and_its_sessions_live(
    tmp_path: Path, emp: SandboxEmp, browser: Browser
) -> None:
    async with console_gateway(tmp_path, emp) as h:
        await emp.wait_for(lambda: len(emp.stations) == 3)
        page = await _logged_in(browser, h)
        charger = page.locator('tr[data-charger="CP-BER-001"]')
        connector = page.locator('tr[data-connector="CP-BER-001/1"]')
        await expect(charger.locator("[data-field=online]")).to_have_text("offline")
        await expect(page.locator("#live")).to_have_text("live updates: on")

        async with h.charger("CP-BER-001", vendor="ACME", model="Wallbox 22") as cp:
            await cp.connect()
            # No reload: the rows change in place from the event stream.
            await expect(charger.locator("[data-field=online]")).to_have_text("online")
            await expect(charger.locator("[data-field=vendor]")).to_have_text("ACME")
            await expect(charger.locator("[data-field=protocol]")).to_have_text("ocpp1.6")
            await cp.status(1, "Preparing")
            await expect(connector.locator("[data-field=status]")).to_have_text("Preparing")
            await cp.status(1, "Available")
            await expect(connector.locator("[data-field=status]")).to_have_text("Available")
            if shot := os.environ.get("CPO_GATEWAY_SCREENSHOT"):
                await page.screenshot(path=shot, full_page=True)

            # The EMP starts and stops a session; the console lists it with its energy.
            async with h.client() as client:
                status, body = await client.session_start(EVSE, EVCO)
                assert status == 200 and body["result"]["code"] == 0, body
                session_id = body["session-start"]["session-id"]
                tx = await _transaction_on(cp, 1)
                await cp.meter_values(1, tx, 4)  # 4 Wh within seconds: plausible on 22 kW
                status, body = await client.session_stop(EVSE, EVCO, session_id)
                assert status == 200 and body["result"]["code"] == 0, body
            await emp.wait_for(lambda: session_id in emp.cdrs, timeout=10)
            await page.goto(console_url(h) + "/sessions")
            row = page.locator(f'tr[data-session="{session_id}"]')
            await expect(row.locator("[data-field=state]")).to_have_text("finished")
            await expect(row.locator("[data-field=energy_kwh]")).to_have_text("0.004")
            await expect(row.locator("[data-field=cdr_state]")).to_have_text("delivered")

            # The EMP refuses a status for good; the operator re-queues the dead row.
            emp.fail_call("connector-post-status", status=400, code=230)
            await cp.status(2, "Faulted", "GroundFailure")
            dead = []
            for _ in range(500):
                dead = await h.store.list_outbox("dead", 10)
                if dead:
                    break
                await asyncio.sleep(0.02)
            assert len(dead) == 1, "the refused status is dead-lettered"
            await page.goto(console_url(h) + "/outbox?state=dead")
            dead_row = page.locator(f'tr[data-row="{dead[0].id}"]')
            await expect(dead_row).to_contain_text("evse-status")
            await dead_row.locator("button[data-action=outbox_retry]").click()
            await expect(page.locator(".flash.ok")).to_have_text(
                "outbox_retry: 1 row(s) queued again"
            )
            await _until_delivered(h, dead[0].id)
            await page.goto(console_url(h) + "/outbox?state=delivered")
            await expect(page.locator(f'tr[data-row="{dead[0].id}"]')).to_contain_text("delivered")
        # The charger left: the live row says so without a reload.
        await page.goto(console_url(h) + "/chargers")
        await expect(charger.locator("[data-field=online]")).to_have_text("offline")
        await page.close()


async def test_the_live_stream_ends_at_logout(
    tmp_path: Path, emp: SandboxEmp, browser: Browser
) -> None:
    async with console_gateway(tmp_path, emp) as h:
        page = await _logged_in(browser, h)
        console = h.gateway.console
        assert console is not None
        await expect(page.locator("#live")).to_have_text("live updates: on")
        assert console.streams == 1
        await page.click("text=Log out")
        await expect(page).to_have_url(console_url(h) + "/login")
        for _ in range(250):  # the stream notices within a poll
            if console.streams == 0:
                break
            await asyncio.sleep(0.02)
        assert console.streams == 0
        await page.goto(console_url(h) + "/outbox")
        await expect(page).to_have_url(console_url(h) + "/login")
        await page.close()
