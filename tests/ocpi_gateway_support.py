"""A real gateway registered with the sandbox eMSP, beside the OIOI sandbox, for the OCPI
end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from tests.conftest import Harness, running_gateway, write_config
from tests.test_ocpi_commands_e2e import config_text


async def until(check: Callable[[], object], what: str, rounds: int = 400) -> None:
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def registered_with_emsp(
    tmp_path: Path, emp: SandboxEmp, card: str | None = None
) -> AsyncIterator[tuple[Harness, SandboxEmsp]]:
    """The gateway, once it has registered with a fresh sandbox eMSP (which has then PUT
    `card` to it as an ALWAYS token, when one is given)."""
    async with SandboxEmsp() as emsp:
        cfg = load_config(write_config(tmp_path, emp_url=emp.url, extra=config_text(emsp)), {})
        async with running_gateway(Gateway(cfg), emp) as h:
            for _ in range(400):
                link = await h.store.link("emsp")
                if link is not None and link.state is LinkState.REGISTERED and emsp.registration:
                    break
                await asyncio.sleep(0.025)
            else:
                raise AssertionError("the gateway never registered with the sandbox eMSP")
            reg = emsp.registration
            if card is not None and reg is not None:
                token = emsp.tokens.token(card, whitelist="ALWAYS")
                put = await emsp.send(
                    "PUT", f"{reg.endpoints['tokens']}/NL/EMS/{card}", reg.token_theirs, token
                )
                assert put["status_code"] == 1000, put
            yield h, emsp
