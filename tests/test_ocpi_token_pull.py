"""Pulling an eMSP's full token list (paginated, Link headers) from the simulated sender into
a running gateway: the list replaces the partner's, a pull broken off half way leaves the
old list in force, tokens pushed during a pull survive it, and bad or foreign tokens are
skipped and counted. Real-time authorization against the same sender."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.bridge.auth import Authorizer, EmpPolicy
from cpo_gateway.bridge.model import AuthPath, AuthStatus, VerifyOutcome
from cpo_gateway.bridge.pending import PendingStarts
from cpo_gateway.ocpi.authorize import AuthorizeTarget, OcpiVerifier, outcome_of
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.token_pull import (
    NIGHTLY_S,
    WAIT_REGISTERED_S,
    PullFailed,
    TokenPuller,
    next_link,
)
from cpo_gateway.ocpi.tokens import parse_token, to_partner_token
from cpo_gateway.ocpi.transport import Party
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp.tokens import TokenSender, generated_uid
from tests.ocpi_tokens_support import EMSP, EMSP_PARTY, EMSP_TOKEN, gateway_with_tokens

CP = "CP-BER-001"
PARTIES = frozenset({EMSP_PARTY})


def test_next_link_reads_the_rel_next_target() -> None:
    assert next_link('<https://x/t?offset=5&limit=5>; rel="next"') == "https://x/t?offset=5&limit=5"
    assert next_link('<https://x/a>; rel="prev", <https://x/b>; rel=next') == "https://x/b"
    assert next_link('<https://x/a>; rel="prev"') is None
    assert next_link(None) is None and next_link("") is None


async def test_a_paginated_pull_replaces_the_partners_list(tmp_path: Path, emp: SandboxEmp) -> None:
    async with (
        gateway_with_tokens(tmp_path, emp) as (h, _),
        TokenSender(EMSP_TOKEN, count=2_500, page_limit=1000) as sender,
    ):
        client = OcpiClient()
        try:
            puller = TokenPuller(client, h.gateway.core.tokens, page_limit=5000)
            sender.set_token("0A0B0C10", whitelist="NEVER")
            sender.set_token("FOREIGN1", country_code="NL")  # not this partner's party
            sender.state.tokens[("BAD", "RFID")] = {"uid": "BAD"}  # no fields at all
            result = await puller.pull(EMSP, sender.url, EMSP_TOKEN, PARTIES)
            assert (result.total, result.pages, result.skipped) == (2_501, 3, 2)
            assert sender.state.pages_served == 3  # the server's X-Limit, followed by Link
            core = h.gateway.core
            async with h.charger(CP) as cp:
                await cp.connect()
                await cp.boot()
                assert await cp.authorize(generated_uid(0)) == "Accepted"
                assert await cp.authorize(generated_uid(2_499)) == "Accepted"
                assert await cp.authorize("0A0B0C10") == "Invalid"  # NEVER, eMSP unreachable
                # The next full list is smaller: what it leaves out is gone.
                sender.state.count = 10
                sender.state.tokens.clear()
                again = await puller.pull(EMSP, sender.url, EMSP_TOKEN, PARTIES)
                assert (again.total, again.previous) == (10, 2_501)
                assert await cp.authorize(generated_uid(9)) == "Accepted"
                assert await cp.authorize(generated_uid(10)) == "Invalid"
            assert await h.store.token_counts() == {EMSP: 10}
            # The superseded generation's rows are swept, not kept beside the new list.
            rows = await h.store.db.scalar("SELECT COUNT(*) FROM tokens WHERE partner = ?", (EMSP,))
            assert rows == 10
            assert core.authorizer.decisions[AuthPath.WHITELIST, AuthStatus.ACCEPTED] == 3
        finally:
            await client.close()


async def test_an_interrupted_pull_leaves_the_old_list_in_force(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with (
        gateway_with_tokens(tmp_path, emp) as (h, _),
        TokenSender(EMSP_TOKEN, count=300, page_limit=100) as sender,
    ):
        client = OcpiClient()
        try:
            tokens = h.gateway.core.tokens
            puller = TokenPuller(client, tokens)
            first = await puller.pull(EMSP, sender.url, EMSP_TOKEN, PARTIES)
            assert first.total == 300
            # The next list has other tokens, and breaks off after two of its four pages.
            sender.state.count = 0
            for i in range(1000, 1400):
                sender.set_token(generated_uid(i))
            sender.state.pages_served = 0
            sender.state.fail_after_pages = 2
            with pytest.raises(PullFailed, match="503"):
                await puller.pull(EMSP, sender.url, EMSP_TOKEN, PARTIES)
            async with h.charger(CP) as cp:
                await cp.connect()
                await cp.boot()
                assert await cp.authorize(generated_uid(299)) == "Accepted"
                assert await cp.authorize(generated_uid(1000)) == "Invalid"  # staged only
            assert await h.store.token_counts() == {EMSP: 300}
            # A token pushed while a pull runs is in the list that pull makes.
            pull = await tokens.begin_list(EMSP)
            pushed = parse_token(sender.token("0D0E0F10"))
            await tokens.put_token(to_partner_token(EMSP, pushed))
            await tokens.list_page(
                EMSP, pull, [to_partner_token(EMSP, parse_token(sender.token("0D0E0F11")))]
            )
            # A newer version pushed during the pull beats the list's older one.
            newer = sender.token("0D0E0F12", valid=False, last_updated="2026-05-01T00:00:00Z")
            await tokens.put_token(to_partner_token(EMSP, parse_token(newer)))
            page = [to_partner_token(EMSP, parse_token(sender.token("0D0E0F12")))]
            await tokens.list_page(EMSP, pull, page)
            replaced = await tokens.finish_list(EMSP, pull)
            assert (replaced.total, replaced.previous) == (3, 302)
            kept = await tokens.get_token(EMSP, "DE", "EMS", "0D0E0F12", "RFID")
            assert kept is not None and not kept.valid and kept.last_updated.startswith("2026-05")
            assert [x.partner for x in await h.store.token_listings("0D0E0F10")] == [EMSP]
            assert await h.store.token_listings(generated_uid(0)) == []
            # A pull superseded by a newer one cannot finish.
            old = await tokens.begin_list(EMSP)
            await tokens.begin_list(EMSP)
            with pytest.raises(RuntimeError, match="no longer being received"):
                await tokens.finish_list(EMSP, old)
        finally:
            await client.close()


async def test_a_next_link_elsewhere_ends_the_pull(tmp_path: Path, emp: SandboxEmp) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.json_response(
            {"data": [], "status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"},
            headers={"Link": '<http://203.0.113.9/steal>; rel="next"'},
        )

    app = web.Application()
    app.router.add_get("/tokens", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/tokens"
    client = OcpiClient()
    try:
        async with gateway_with_tokens(tmp_path, emp) as (h, _):
            puller = TokenPuller(client, h.gateway.core.tokens)
            # An empty page ends the list whatever its Link says.
            assert (await puller.pull(EMSP, url, EMSP_TOKEN, PARTIES)).total == 0

            async def full_page(request: web.Request) -> web.Response:
                sender = TokenSender(EMSP_TOKEN)
                return web.json_response(
                    {"data": [sender.token("0A0A0A0A")], "status_code": 1000, "timestamp": "x"},
                    headers={"Link": '<http://203.0.113.9/steal>; rel="next"'},
                )

            app2 = web.Application()
            app2.router.add_get("/tokens", full_page)
            runner2 = web.AppRunner(app2)
            await runner2.setup()
            await web.TCPSite(runner2, "127.0.0.1", 0).start()
            try:
                url2 = f"http://127.0.0.1:{runner2.addresses[0][1]}/tokens"
                with pytest.raises(PullFailed, match="Link: next page"):
                    await puller.pull(EMSP, url2, EMSP_TOKEN, PARTIES)
            finally:
                await runner2.cleanup()
            assert await h.store.token_listings("0A0A0A0A") == []
    finally:
        await client.close()
        await runner.cleanup()


# --- real-time authorization ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("http", "code", "data", "outcome"),
    [
        (200, 1000, {"allowed": "ALLOWED"}, VerifyOutcome.ACCEPTED),
        (200, 1000, {"allowed": "BLOCKED"}, VerifyOutcome.BLOCKED),
        (200, 1000, {"allowed": "EXPIRED"}, VerifyOutcome.EXPIRED),
        (200, 1000, {"allowed": "NO_CREDIT"}, VerifyOutcome.NO_PAYMENT),
        (200, 1000, {"allowed": "NOT_ALLOWED"}, VerifyOutcome.NOT_ALLOWED),
        (200, 1000, {"allowed": "MAYBE"}, VerifyOutcome.UNREACHABLE),
        (200, 1000, None, VerifyOutcome.UNREACHABLE),
        (200, 1000, [{"allowed": "BLOCKED"}], VerifyOutcome.BLOCKED),  # wrapped in a list of one
        (200, 1000, [{"allowed": "ALLOWED"}] * 2, VerifyOutcome.UNREACHABLE),
        (200, 1000, [], VerifyOutcome.UNREACHABLE),
        (404, 2004, None, VerifyOutcome.UNKNOWN),
        (200, 2004, None, VerifyOutcome.UNKNOWN),
        (200, 3000, None, VerifyOutcome.UNREACHABLE),
        (502, None, None, VerifyOutcome.UNREACHABLE),
    ],
)
def test_authorization_info_is_read_as_the_cores_outcome(
    http: int, code: int | None, data: object, outcome: VerifyOutcome
) -> None:
    assert outcome_of(http, code, data) is outcome


async def test_real_time_authorization_asks_the_tokens_owner(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with (
        gateway_with_tokens(tmp_path, emp) as (h, _),
        TokenSender(EMSP_TOKEN) as sender,
    ):
        client = OcpiClient()
        try:
            tokens = h.gateway.core.tokens
            for uid, whitelist in (("0A0B0C0F", "ALLOWED_OFFLINE"), ("0A0B0C10", "NEVER")):
                issued = parse_token(sender.set_token(uid.lower(), whitelist=whitelist))
                await tokens.put_token(to_partner_token(EMSP, issued))
            up = True

            async def target(partner: str) -> AuthorizeTarget | None:
                url = sender.url if up else "http://127.0.0.1:9/tokens"
                return AuthorizeTarget(url, EMSP_TOKEN) if partner == EMSP else None

            verifier = OcpiVerifier(client, target, tokens.issued_as)
            store = h.store

            chain = Authorizer(
                [EmpPolicy(EMSP, False, False, 2.0)],
                verifier,
                store.token_listings,
                PendingStarts(time.time),
                cache_ttl_s=0,
                clock=time.time,
            )
            assert (await chain.authorize("0A0B0C0F")).status is AuthStatus.ACCEPTED
            # The owner is asked with the uid as it issued it, and the token's type.
            assert sender.state.authorize_calls[-1][:2] == ("0a0b0c0f", "RFID")
            sender.state.answers["0a0b0c0f"] = "BLOCKED"
            decision = await chain.authorize("0A0B0C0F")
            assert (decision.status, decision.path) == (AuthStatus.BLOCKED, AuthPath.ONLINE)
            sender.state.answers["0a0b0c10"] = "EXPIRED"
            assert (await chain.authorize("0A0B0C10")).status is AuthStatus.EXPIRED
            sender.state.answers["0a0b0c10"] = "NO_CREDIT"
            assert (await chain.authorize("0A0B0C10")).status is AuthStatus.INVALID
            up = False  # the eMSP is gone: each token's own word decides
            decision = await chain.authorize("0A0B0C0F")
            assert (decision.status, decision.path) == (AuthStatus.ACCEPTED, AuthPath.POLICY)
            decision = await chain.authorize("0A0B0C10")
            assert (decision.status, decision.path) == (AuthStatus.INVALID, AuthPath.POLICY)
            up = True
            assert await verifier.verify(EMSP, "99999999") is VerifyOutcome.UNKNOWN
            assert await verifier.verify("nobody", "0A0B0C0F") is VerifyOutcome.UNREACHABLE
            wrong = OcpiVerifier(
                client, lambda p: _target(sender.url, "wrong-token"), tokens.issued_as
            )
            assert await wrong.verify(EMSP, "0A0B0C0F") is VerifyOutcome.UNREACHABLE
        finally:
            await client.close()


async def _target(url: str, token: str) -> AuthorizeTarget:
    return AuthorizeTarget(url, token)


# --- properties of the parsers of what the partner sends ------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["allowed", "token", "x"]) | st.text(max_size=8), children
        )
    ),
    max_leaves=10,
)


@given(st.text(max_size=200))
def test_any_link_header_gives_a_target_or_none(value: str) -> None:
    target = next_link(value)
    assert target is None or (isinstance(target, str) and ">" not in target)


@given(st.integers(0, 999), st.none() | st.integers(), JSON)
def test_any_authorize_answer_is_one_outcome(http: int, code: int | None, data: object) -> None:
    outcome = outcome_of(http, code, data)
    assert isinstance(outcome, VerifyOutcome)
    if outcome is VerifyOutcome.ACCEPTED:  # only the partner's explicit word accepts
        assert isinstance(data, dict) and data["allowed"] == "ALLOWED" and code is not None


async def test_a_node_without_the_pull_lease_does_not_pull(tmp_path: Path, emp: SandboxEmp) -> None:
    """In a cluster the nightly pull runs where its lease is: another node only waits."""
    async with (
        gateway_with_tokens(tmp_path, emp) as (h, _),
        TokenSender(EMSP_TOKEN, count=3, page_limit=10) as sender,
    ):
        client = OcpiClient()
        leased = [False, False, True]  # the lease comes to this node at its third look
        slept: list[float] = []
        asked: list[str] = []

        async def source(partner: str) -> tuple[str, str, frozenset[Party]] | None:
            asked.append(partner)
            return sender.url, EMSP_TOKEN, PARTIES

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            if asked:  # the pull ran: stop the loop at its nightly wait
                raise asyncio.CancelledError

        try:
            puller = TokenPuller(client, h.gateway.core.tokens)
            with pytest.raises(asyncio.CancelledError):
                await puller.keep_pulling(EMSP, source, sleep=sleep, may_run=lambda: leased.pop(0))
        finally:
            await client.close()
    assert slept[:2] == [WAIT_REGISTERED_S, WAIT_REGISTERED_S]
    assert asked == [EMSP] and slept[2] == NIGHTLY_S
