"""Tariffs reach an OCPI partner through the outbox: PUT once its registration completes
(kept while its receiver is down), again only when a reload changes a [[tariff]] table,
DELETE when one is removed; an unchanged file queues nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from cpo_gateway.sim.ocpi_emsp.sandbox import Fault
from tests.conftest import Harness, running_gateway, write_config
from tests.test_ocpi_commands_e2e import config_text

TARIFF_PATH = "/tariffs/DE/CPO/AC-STANDARD"


async def until(check: Callable[[], Any], what: str, rounds: int = 400) -> None:
    for _ in range(rounds):
        if await check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


def tariff_requests(emsp: SandboxEmsp) -> list[tuple[str, Any]]:
    return [(r.method, r.body) for r in emsp.received if r.path.endswith(TARIFF_PATH)]


async def tariff_rows(h: Harness) -> list[tuple[str, int]]:
    rows = await h.store.db.all("SELECT state, attempts FROM outbox WHERE kind = 'tariff'")
    return [(str(r[0]), int(r[1])) for r in rows]


async def test_tariffs_are_pushed_after_registration_and_after_a_changing_reload(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with SandboxEmsp() as emsp:
        emsp.fault = Fault.ERROR  # its receivers are down; registration still works
        path = write_config(tmp_path, emp_url=emp.url, extra=config_text(emsp))
        async with running_gateway(Gateway(load_config(path, {})), emp) as h:

            async def registered() -> bool:
                link = await h.store.link("emsp")
                return link is not None and link.state is LinkState.REGISTERED

            await until(registered, "the registration")

            async def tried() -> bool:
                return any(attempts > 0 for _, attempts in await tariff_rows(h))

            await until(tried, "a failed tariff delivery")
            assert tariff_requests(emsp) == []
            assert [state for state, _ in await tariff_rows(h)] == ["pending"]
            emsp.fault = Fault.NONE

            def delivered(n: int) -> Callable[[], Any]:
                async def check() -> bool:
                    return len(tariff_requests(emsp)) >= n and all(
                        s == "delivered" for s, _ in await tariff_rows(h)
                    )

                return check

            await until(delivered(1), "the tariff PUT")
            ((method, body),) = tariff_requests(emsp)
            assert method == "PUT" and body["id"] == "AC-STANDARD"
            energy = body["elements"][0]["price_components"][0]
            assert energy["type"] == "ENERGY" and energy["price"] == 0.39

            # A reload that changes no tariff queues none.
            assert await h.gateway.reload() is True
            assert len(await tariff_rows(h)) == 1

            stations = path.parent / "stations.toml"
            text = stations.read_text()
            stations.write_text(text.replace("price = 0.39", "price = 0.45", 1))
            assert await h.gateway.reload() is True
            await until(delivered(2), "the changed tariff's PUT")
            method, body = tariff_requests(emsp)[1]
            assert method == "PUT"
            assert body["elements"][0]["price_components"][0]["price"] == 0.45

            start = text.index("[[tariff]]")
            end = text.index("# Per-charger security")
            stations.write_text(text[:start] + text[end:])
            assert await h.gateway.reload() is True
            await until(delivered(3), "the removed tariff's DELETE")
            assert [m for m, _ in tariff_requests(emsp)] == ["PUT", "PUT", "DELETE"]
            assert len(await tariff_rows(h)) == 3
