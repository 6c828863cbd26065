"""The admin listener times out idle and slow clients like every listener (the deadlines of
[oioi]; its own connection caps), while a logged-in operator's pages are served."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import running_gateway, write_config
from tests.test_console_support import TOKEN, admin_table
from tests.test_edge_oioi_connections import closed_by_server, connect, slowloris


async def test_idle_and_slow_clients_of_the_console_are_closed(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    (tmp_path / "admin.token").write_text(TOKEN + "\n", encoding="utf-8")
    path = write_config(
        tmp_path, emp_url=emp.url, admin=admin_table(),
        oioi="header_timeout_s = 0.5\nkeepalive_timeout_s = 0.5",
    )  # fmt: skip
    async with running_gateway(Gateway(load_config(path, {})), emp) as h:
        console = h.gateway.console
        assert console is not None
        reader, writer = await connect(console.port, "127.0.0.2")
        try:
            assert await closed_by_server(reader), "an idle socket must not be kept"
        finally:
            writer.close()
        assert await slowloris(console.port, "127.0.0.3")
        assert console.listener.timed_out["headers"] >= 2
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{console.port}/login") as resp,
        ):
            assert resp.status == 200  # a real client is served
