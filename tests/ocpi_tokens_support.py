"""Shared by the OCPI token tests: the Tokens receiver mounted on a real aiohttp listener
(port 0) behind the OCPI middleware, in front of a running gateway's core."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.core_ports import TokenSide
from cpo_gateway.config import load_config
from cpo_gateway.ocpi.tokens_api import TokenPartner, TokensReceiver
from cpo_gateway.ocpi.transport import (
    OcpiError,
    Party,
    RequestCounts,
    encode_token,
    middleware,
    token_candidates,
)
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import (
    INBOUND_KEY,
    OUTBOUND_KEY,
    PARTNER,
    Harness,
    running_gateway,
    write_config,
)

PREFIX = "/ocpi/cpo/2.2.1/tokens"
EMSP = "emsp"
EMSP_TOKEN = "token-c-of-emsp-0001"
OTHER_TOKEN = "token-c-of-other-0002"
EMSP_PARTY = Party("DE", "EMS")
OTHER_PARTY = Party("NL", "OTH")
DEAD_URL = "http://127.0.0.1:9/api/v4/request"  # nothing listens: every call fails at once


def emps(oioi_url: str) -> str:
    """The OIOI sandbox beside an eMSP whose verify cannot be reached (the core asks a
    token's owner through the EMP link; this one's link answers UNREACHABLE)."""
    return f"""
        [[emp]]
        name = "sandbox"
        url = "{oioi_url}"
        api_key = "{OUTBOUND_KEY}"
        inbound_api_key = "{INBOUND_KEY}"
        partner_identifier = "{PARTNER}"
        online_authorization = false

        [[emp]]
        name = "{EMSP}"
        url = "{DEAD_URL}"
        api_key = "{OUTBOUND_KEY}"
        inbound_api_key = "emsp-inbound-key-0003"
        partner_identifier = "emsp-partner-identifier-03"
        online_authorization = false
        verify_timeout_s = 1.0

        [[emp]]
        name = "other"
        url = "{DEAD_URL}"
        api_key = "{OUTBOUND_KEY}"
        inbound_api_key = "other-inbound-key-0004"
        partner_identifier = "other-partner-identifier-04"
        online_authorization = false
    """


PARTNERS = {
    EMSP_TOKEN: TokenPartner(EMSP, frozenset({EMSP_PARTY})),
    OTHER_TOKEN: TokenPartner("other", frozenset({OTHER_PARTY})),
}


def auth(token: str = EMSP_TOKEN) -> dict[str, str]:
    return {"Authorization": encode_token(token)}


@contextlib.asynccontextmanager
async def receiver(tokens: TokenSide) -> AsyncIterator[str]:
    """The receiver on port 0; yields its tokens base URL."""

    async def identify(request: web.Request) -> TokenPartner:
        for candidate in token_candidates(request.headers.get("Authorization")):
            if candidate in PARTNERS:
                return PARTNERS[candidate]
        raise OcpiError.unauthorized("Authorization: unknown token")

    app = web.Application(
        middlewares=[middleware(RequestCounts(), Party("DE", "CPO"))], client_max_size=64 * 1024
    )
    TokensReceiver(tokens, identify).add_routes(app.router, PREFIX)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{PREFIX}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def gateway_with_tokens(
    tmp_path: Path, emp: SandboxEmp
) -> AsyncIterator[tuple[Harness, str]]:
    cfg = load_config(write_config(tmp_path, emps=emps(emp.url)), {})
    gateway = Gateway(cfg)
    async with running_gateway(gateway, emp) as h, receiver(gateway.core.tokens) as url:
        yield h, url
