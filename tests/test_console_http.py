"""The console over plain HTTP (a real gateway, a real aiohttp client): login, sessions,
CSRF, audited actions, the CSV export, the login limit, /metrics and /healthz."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from cpo_gateway.bridge.ports import OutboxItem
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER, Harness
from tests.test_console_support import (
    OPERATOR,
    PASSWORD,
    TOKEN,
    browser_session,
    console_gateway,
    console_url,
    csrf_of,
    login,
)

CARD = "04A2B3C4D5E6F7"


async def delivered(h: Harness) -> list[OutboxItem]:
    """The delivered outbox rows, once the first station-posts are marked delivered."""
    for _ in range(250):
        rows = await h.store.list_outbox("delivered", 100)
        if rows:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError("no outbox row was delivered within 5 s")


def _audit(events: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e["event"] == name]


async def test_pages_and_actions_need_a_login(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        base = console_url(h)
        for page in ("/", "/chargers", "/sessions", "/sessions.csv", "/outbox", "/emps"):
            async with http.get(base + page, allow_redirects=False) as r:
                assert r.status == 302, page
                assert r.headers["Location"] == "/login", page
        async with http.get(base + "/events") as r:
            assert r.status == 401
        async with http.post(base + "/actions/outbox_retry_pending", data={"csrf": "x"}) as r:
            assert r.status == 401
        # Health and metrics are for scrapers and probes: no login.
        async with http.get(base + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(base + "/metrics") as r:
            assert "cpo_gateway_chargers_connected 0" in await r.text()


async def test_a_wrong_password_gets_no_session(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        base = console_url(h)
        with structlog.testing.capture_logs() as events:
            refused = await login(http, base, OPERATOR, "not the password")
        assert refused.status == 401
        assert "cg_session" not in {c.key for c in http.cookie_jar}
        assert _audit(events, "audit.login_failed")[0]["operator"] == OPERATOR
        async with http.get(base + "/chargers", allow_redirects=False) as r:
            assert r.status == 302
        # The right password, and the shared token under any name, both open a session.
        assert (await login(http, base)).status == 303
        async with http.get(base + "/chargers") as r:
            page = await r.text()
            assert r.status == 200 and OPERATOR in page and "CP-BER-001" in page
        cookie = next(c for c in http.cookie_jar if c.key == "cg_session")
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with http.get(base + "/emps") as r:
            recent = (await r.text()).split('id="recent"')[1]
        # Newest first: the login, then the refused attempt, with whom and from where.
        assert recent.index("audit.login<") < recent.index("audit.login_failed")
        assert "operator=alice source=127.0.0.1" in recent
    async with console_gateway(tmp_path / "t", emp) as h, browser_session() as http:
        assert (await login(http, console_url(h), "bob", TOKEN)).status == 303
        async with http.get(console_url(h) + "/chargers") as r:
            assert "bob (token)" in await r.text()


async def test_a_login_form_without_its_nonce_is_refused(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        data = {"nonce": "forged", "name": OPERATOR, "password": PASSWORD}
        async with http.post(console_url(h) + "/login", data=data) as r:
            assert r.status == 403
        assert "cg_session" not in {c.key for c in http.cookie_jar}


async def test_a_post_without_the_right_csrf_token_is_refused(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        base = console_url(h)
        await login(http, base)
        token = await csrf_of(http, base)
        rows = await delivered(h)
        url = f"{base}/actions/outbox_purge"
        with structlog.testing.capture_logs() as events:
            for data in ({"row_id": str(rows[0].id)}, {"row_id": str(rows[0].id), "csrf": "x"}):
                async with http.post(url, data=data, allow_redirects=False) as r:
                    assert r.status == 403
            async with http.post(f"{base}/logout", data={}, allow_redirects=False) as r:
                assert r.status == 403  # logging out is an action too
        assert _audit(events, "audit.outbox_purge") == []
        assert await h.store.outbox_item(rows[0].id) is not None  # nothing was purged
        data = {"row_id": str(rows[0].id), "csrf": token, "back": "//evil.example/"}
        async with http.post(url, data=data, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/chargers"
        assert await h.store.outbox_item(rows[0].id) is None


async def test_logging_out_ends_the_session(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        base = console_url(h)
        await login(http, base)
        token = await csrf_of(http, base)
        stolen = next(c.value for c in http.cookie_jar if c.key == "cg_session")
        async with http.post(f"{base}/logout", data={"csrf": token}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        async with (
            aiohttp.ClientSession(cookies={"cg_session": stolen}) as other,
            other.get(base + "/chargers", allow_redirects=False) as r,
        ):
            assert r.status == 302  # the old cookie is worth nothing now


async def test_logins_are_limited_per_source_and_name(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        base = console_url(h)
        for _ in range(5):
            assert (await login(http, base, OPERATOR, "guess")).status == 401
        with structlog.testing.capture_logs() as events:
            limited = await login(http, base)  # even the right password, for now
        assert limited.status == 429
        assert _audit(events, "audit.login_limited")
        assert "cg_session" not in {c.key for c in http.cookie_jar}


async def test_each_action_is_audited_with_the_operator(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        base = console_url(h)
        await login(http, base)
        token = await csrf_of(http, base)
        forms = {
            "trigger_status": {"charge_point": "CP-BER-001"},
            "reset": {"charge_point": "CP-BER-001", "type": "Soft"},
            "unlock": {"charge_point": "CP-BER-001", "connector": "1"},
            "change_availability": {
                "charge_point": "CP-BER-001", "connector": "1", "type": "Inoperative",
            },
            "push_local_list": {"charge_point": "CP-BER-001"},
            "remote_stop": {"session_id": "no-such-session"},
            "close_session": {"session_id": "no-such-session", "reason": "ghost"},
            "release_cdr": {"session_id": "no-such-session"},
            "outbox_retry": {"row_id": "999999"},
            "outbox_retry_pending": {},
            "outbox_purge": {"row_id": "999999"},
        }  # fmt: skip
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            with structlog.testing.capture_logs() as events:
                for name, form in forms.items():
                    data = {**form, "csrf": token, "back": "/chargers"}
                    async with http.post(f"{base}/actions/{name}", data=data) as r:
                        assert r.status == 200, name  # the redirect to the page, rendered
                        page = await r.text()
                    assert f"{name}: " in page, name  # the outcome is shown to the operator
        for name, form in forms.items():
            (line,) = _audit(events, f"audit.{name}")
            assert line["operator"] == OPERATOR
            assert {k: line[k] for k in form} == form
            assert isinstance(line["ok"], bool) and line["detail"]
        by_name = {e["event"]: e for e in events if e["event"].startswith("audit.")}
        assert by_name["audit.trigger_status"]["ok"] is True  # the charger answered Accepted
        assert by_name["audit.reset"]["ok"] is True
        assert by_name["audit.remote_stop"]["ok"] is False
        assert by_name["audit.outbox_purge"]["detail"] == "no such row"


async def test_sessions_export_as_csv_with_their_energy(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        await emp.wait_for(lambda: len(emp.stations) == 3)
        async with h.client() as client:
            await client.rfid_post(PARTNER, [CARD])
        started = datetime.now(UTC) - timedelta(minutes=30)
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            tx = await cp.start_transaction(1, CARD, meter_start=1000, timestamp=started)
            assert await cp.stop_transaction(tx, 8500) is not None
        base = console_url(h)
        await login(http, base)
        async with http.get(base + "/sessions.csv?state=finished") as r:
            assert r.status == 200 and r.content_type == "text/csv"
            rows = list(csv.DictReader(io.StringIO(await r.text())))
        (row,) = rows
        assert row["state"] == "finished" and row["evse_id"] == "DE*CPO*E1001*1"
        assert float(row["energy_kwh"]) == 7.5
        assert 1700 < float(row["duration_s"]) < 1900
        assert row["cdr_state"] in ("pending", "delivered")
        async with http.get(base + "/sessions.csv?state=failed") as r:
            assert len(list(csv.DictReader(io.StringIO(await r.text())))) == 0
        async with http.get(base + "/sessions.csv?state=bogus") as r:
            assert r.status == 400


async def test_a_held_cdr_is_released_from_the_console(tmp_path: Path, emp: SandboxEmp) -> None:
    async with console_gateway(tmp_path, emp) as h, browser_session() as http:
        await emp.wait_for(lambda: len(emp.stations) == 3)
        async with h.client() as client:
            await client.rfid_post(PARTNER, [CARD])
        started = datetime.now(UTC) - timedelta(minutes=30)
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            tx = await cp.start_transaction(1, CARD, meter_start=0, timestamp=started)
            assert await cp.stop_transaction(tx, 10**9) is not None  # 1 GWh: held
        (held,) = await h.store.list_sessions(10, "needs_review")
        base = console_url(h)
        await login(http, base)
        async with http.get(base + "/sessions?state=needs_review") as r:
            assert "Release CDR" in await r.text()
        token = await csrf_of(http, base)
        data = {"session_id": held.id, "csrf": token, "back": "/sessions"}
        with structlog.testing.capture_logs() as events:
            async with http.post(f"{base}/actions/release_cdr", data=data) as r:
                assert "CDR queued for sandbox" in await r.text()
        assert _audit(events, "audit.release_cdr")[0]["ok"] is True
        await emp.wait_for(lambda: held.id in emp.cdrs, timeout=10)


async def test_metrics_can_leave_the_oioi_port(tmp_path: Path, emp: SandboxEmp) -> None:
    async with (
        console_gateway(tmp_path, emp, admin_extra="metrics_on_oioi = false") as h,
        aiohttp.ClientSession() as http,
    ):
        for path in ("/metrics", "/healthz"):
            async with http.get(h.base_url + path) as r:
                assert r.status == 404, path
            async with http.get(console_url(h) + path) as r:
                assert r.status == 200, path
