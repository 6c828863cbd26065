"""The console's read-only pages over HTTP (whitelist, EMPs, outbox, sessions filters) and its
live stream: what it sends, and that it ends when the gateway stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER, write_config
from tests.test_console_support import (
    TOKEN,
    admin_table,
    browser_session,
    console_gateway,
    console_url,
    login,
)


async def test_the_whitelist_page_looks_up_a_uid(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        async with h.client() as client:
            await client.rfid_post(PARTNER, ["04a2b3c4d5e6f7", "11223344"])
        base = console_url(h)
        await login(http, base)
        async with http.get(base + "/whitelist?uid=4a2b3c4d5e6f7") as r:
            page = await r.text()
        assert "04A2B3C4D5E6F7 is whitelisted by sandbox" in page  # normalised as everywhere
        assert "<td>sandbox</td><td>2</td>" in page
        async with http.get(base + "/whitelist?uid=99999999") as r:
            assert "99999999 is not on any whitelist" in await r.text()
        async with http.get(base + "/whitelist?uid=<script>") as r:
            page = await r.text()
        assert "<script>" not in page and "&lt;script&gt;" in page  # escaped, never markup


async def test_the_emp_page_shows_health_and_queue(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        await emp.wait_for(lambda: len(emp.stations) == 3)
        base = console_url(h)
        await login(http, base, "ops", TOKEN)
        for _ in range(250):  # until the station-posts are marked delivered
            async with http.get(base + "/emps") as r:
                page = await r.text()
            if "<td>sandbox</td><td>20" in page:  # (the audit rows carry times from the start)
                break
            await asyncio.sleep(0.02)
        assert "<td>sandbox</td><td>20" in page  # the last success, as an RFC 3339 time
        assert "healthy" in page and "charger logins refused" in page
        async with http.get(base + "/outbox?state=delivered") as r:
            page = await r.text()
        assert "<td>station</td>" in page and "DE-BER-ALEX-01" in page
        async with http.get(base + "/outbox?state=nonsense") as r:
            assert r.status == 400


async def test_the_live_stream_sends_rows_and_ends_at_shutdown(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    (tmp_path / "admin.token").write_text(TOKEN, encoding="utf-8")
    cfg = load_config(write_config(tmp_path, emp_url=emp.url, admin=admin_table()), {})
    gateway = Gateway(cfg)
    await gateway.start()
    stopped = False
    try:
        assert gateway.console is not None
        base = f"http://127.0.0.1:{gateway.console.port}"
        async with browser_session() as http:
            await login(http, base)
            async with http.get(base + "/events") as stream:
                assert stream.content_type == "text/event-stream"
                kinds: dict[str, dict[str, object]] = {}
                for _ in range(200):  # the first poll sends every row
                    line = (await stream.content.readline()).decode()
                    if line.startswith("event: "):
                        kind = line[7:].strip()
                        data = orjson.loads((await stream.content.readline())[6:])
                        kinds.setdefault(kind, data)
                    if line.startswith(": tick"):
                        break
                assert set(kinds) == {"charger", "connector"}
                assert kinds["charger"]["online"] is False
                async with asyncio.timeout(10):  # the stop must not wait on the stream
                    await gateway.stop()
                    stopped = True
                rest = await asyncio.wait_for(stream.content.read(), 5)
                assert b"event:" not in rest  # ended, nothing after the stop
    finally:
        if not stopped:
            await gateway.stop()


async def test_connectors_show_the_status_last_sent_to_each_emp(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with (
        console_gateway(tmp_path, emp) as h,
        browser_session() as http,
        h.charger("CP-BER-001") as cp,
    ):
        await cp.connect()
        await cp.status(1, "Available")
        await emp.wait_for(lambda: emp.statuses.get("DE*CPO*E1001*1") == "Available")
        base = console_url(h)
        await login(http, base, "ops", TOKEN)
        page = ""
        for _ in range(250):  # until the EMP's answer is committed
            async with http.get(base + "/chargers") as r:
                page = await r.text()
            if "sandbox: Available (delivered)" in page:
                break
            await asyncio.sleep(0.02)
        assert "sandbox: Available (delivered)" in page
