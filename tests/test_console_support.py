"""Helpers shared by the tests/test_console_*.py files (this module holds no tests).

A gateway with an [admin] listener (one operator with an scrypt hash, one token), started in
this event loop with the sandbox EMP, and a logged-in aiohttp client of its console.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.passwords import hash_password
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import Harness, running_gateway, write_config

OPERATOR = "alice"
PASSWORD = "correct horse battery staple"
TOKEN = "console-token-0123456789abcdef"
_HASH = hash_password(PASSWORD)  # once per test run: scrypt is slow on purpose


def admin_table(extra: str = "") -> str:
    return f"""
        token_file = "admin.token"
        {extra}

        [[admin.user]]
        name = "{OPERATOR}"
        password_hash = "{_HASH}"
    """


@contextlib.asynccontextmanager
async def console_gateway(
    tmp_path: Path, emp: SandboxEmp, *, admin_extra: str = ""
) -> AsyncIterator[Harness]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "admin.token").write_text(TOKEN + "\n", encoding="utf-8")
    path = write_config(tmp_path, emp_url=emp.url, admin=admin_table(admin_extra))
    async with running_gateway(Gateway(load_config(path, {})), emp) as h:
        yield h


def console_url(h: Harness) -> str:
    assert h.gateway.console is not None
    return f"http://127.0.0.1:{h.gateway.console.port}"


def browser_session() -> aiohttp.ClientSession:
    # unsafe=True: keep cookies set by an IP address host (127.0.0.1), as a browser does.
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=15),
    )


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found is not None, f"no hidden {name} field in the page"
    return found.group(1)


async def login(
    http: aiohttp.ClientSession, base: str, name: str = OPERATOR, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    async with http.get(f"{base}/login") as form:
        nonce = hidden(await form.text(), "nonce")
    async with http.post(
        f"{base}/login",
        data={"nonce": nonce, "name": name, "password": password},
        allow_redirects=False,
    ) as response:
        await response.read()
        return response


async def csrf_of(http: aiohttp.ClientSession, base: str, page: str = "/chargers") -> str:
    async with http.get(f"{base}{page}") as response:
        assert response.status == 200, response.status
        return hidden(await response.text(), "csrf")
