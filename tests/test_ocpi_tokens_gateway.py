"""OCPI tokens end to end on a running gateway with its OCPI listener: it registers with the
sandbox eMSP, pulls the eMSP's token list, takes pushed tokens on the Tokens module, and a
1.6 charger's Authorize follows each token's whitelist type, asking the eMSP in real time
where the type says so."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from cpo_gateway.sim.ocpi_emsp.tokens import generated_uid
from tests.conftest import running_gateway, write_config

CP = "CP-BER-001"
OCPI = """
[ocpi]
host = "127.0.0.1"
port = 0
country_code = "DE"
party_id = "CPO"
business_name = "Test CPO"
"""


async def _until(check: Callable[[], Awaitable[bool]], what: str, rounds: int = 400) -> None:
    for _ in range(rounds):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_pulled_and_pushed_tokens_reach_authorize(tmp_path: Path, emp: SandboxEmp) -> None:
    emsp = SandboxEmsp()
    await emsp.start()
    try:
        emsp.tokens.state.count = 1_500  # three pages
        emsp.tokens.set_token("0A0B0C0F", whitelist="ALLOWED_OFFLINE")
        emsp.tokens.set_token("0A0B0C10", whitelist="NEVER")
        emsp.tokens.set_token("0A0B0C11", whitelist="NEVER")
        emsp.tokens.set_token("0A0B0C12", whitelist="NEVER")
        emps = f"""
[[emp]]
name = "emsp"
protocol = "ocpi"
versions_url = "{emsp.versions_url}"
token_a = "{emsp.token_a}"
verify_timeout_s = 2.0
"""
        path = write_config(tmp_path, emp_url=emp.url, extra=emps + OCPI)
        async with running_gateway(Gateway(load_config(path, {})), emp) as h:

            async def registered() -> bool:
                link = await h.store.link("emsp")
                return link is not None and link.state is LinkState.REGISTERED

            await _until(registered, "the registration")

            async def pulled() -> bool:
                return (await h.store.token_counts()).get("emsp") == 1_504

            await _until(pulled, "the token list")
            assert emsp.tokens.state.pages_served == 2  # 1,000 a page
            reg = emsp.registration
            assert reg is not None
            at = reg.endpoints["tokens"]
            async with h.charger(CP) as cp:
                await cp.connect()
                await cp.boot()
                assert await cp.authorize(generated_uid(1_234)) == "Accepted"
                # NEVER: asked in real time, with the token's uid and type.
                assert await cp.authorize("0A0B0C10") == "Accepted"
                # ... and where: the charger's station and EVSEs, as Locations names them.
                assert emsp.tokens.state.authorize_calls[-1] == (
                    "0A0B0C10",
                    "RFID",
                    {
                        "location_id": "DE-BER-ALEX-01",
                        "evse_uids": ["DE*CPO*E1001*1", "DE*CPO*E1001*2"],
                    },
                )
                # A start with the card names its connector's EVSE only.
                assert await cp.start_transaction(1, "0A0B0C11") > 0
                assert emsp.tokens.state.authorize_calls[-1][2] == {
                    "location_id": "DE-BER-ALEX-01",
                    "evse_uids": ["DE*CPO*E1001*1"],
                }
                # A token pushed on the Tokens module; one of another party refused.
                pushed = emsp.tokens.token("0B0B0B0B", whitelist="ALWAYS")
                answer = await emsp.send("PUT", f"{at}/NL/EMS/0B0B0B0B", reg.token_theirs, pushed)
                assert (answer["_http_status"], answer["status_code"]) == (200, 1000), answer
                foreign = {**pushed, "country_code": "BE", "party_id": "XXX"}
                answer = await emsp.send("PUT", f"{at}/BE/XXX/0B0B0B0B", reg.token_theirs, foreign)
                assert answer["_http_status"] == 403
                answer = await emsp.send("GET", f"{at}/NL/EMS/0B0B0B0B", reg.token_theirs)
                assert answer["data"] == pushed
                assert await cp.authorize("0B0B0B0B") == "Accepted"
                calls = len(emsp.tokens.state.authorize_calls)
                # The eMSP goes away: ALLOWED_OFFLINE is accepted, NEVER refused.
                await emsp.stop()
                assert await cp.authorize("0A0B0C0F") == "Accepted"
                assert await cp.authorize("0A0B0C12") == "Invalid"
                assert await cp.authorize("0B0B0B0B") == "Accepted"  # ALWAYS: never asked
                assert len(emsp.tokens.state.authorize_calls) == calls
    finally:
        await emsp.stop()
