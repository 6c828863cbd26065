"""Pull a partner's full token list (mod_tokens 12.2.2.1, paginated), on registration and
nightly, and make it the partner's list.

Pages are followed by their `Link: <...>; rel="next"` header (pagination: the server decides
the page size, X-Limit). Each page is parsed and staged in one commit while the next page is
already on its way, so memory holds two pages whatever the list's length. Only when the last
page has been staged does the core swap the lists (one small commit): a pull that fails half
way (the partner goes away, a page is not an envelope) leaves the list in force untouched.

A token that does not parse, or that belongs to a party the partner does not speak for, is
skipped and counted (the first few logged with the field); the rest of the list still
counts. A next link to another origin than the list's own is refused (a hostile peer must not
make the gateway fetch elsewhere). Every loop is bounded (`max_pages`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from cpo_gateway import logs
from cpo_gateway.bridge.core_ports import TokenSide
from cpo_gateway.bridge.model import PartnerToken
from cpo_gateway.ocpi.client import OcpiCallFailed, OcpiClient, OcpiReply
from cpo_gateway.ocpi.tokens import TokenError, parse_token, to_partner_token
from cpo_gateway.ocpi.transport import Party

log = logs.get(__name__)
PAGE_LIMIT = 1000
MAX_PAGES = 20_000
NIGHTLY_S = 86_400.0
WAIT_REGISTERED_S = 2.0  # a point read of the partner's link: cheap
RETRY_FIRST_S = 60.0
_LOGGED_SKIPS = 5
_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*?rel="?next"?', re.IGNORECASE)


class PullFailed(Exception):
    """The list could not be read to its end; the partner's list in force is unchanged."""


@dataclass(frozen=True, slots=True)
class PullResult:
    total: int  # tokens in the list now in force
    previous: int
    pages: int
    skipped: int  # tokens refused (bad fields, a foreign party)


def next_link(value: str | None) -> str | None:
    """The rel="next" target of a Link header, None when there is none."""
    if not value:
        return None
    match = _NEXT.search(value)
    return match.group(1).strip() if match else None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class TokenPuller:
    def __init__(
        self,
        client: OcpiClient,
        tokens: TokenSide,
        *,
        page_limit: int = PAGE_LIMIT,
        max_pages: int = MAX_PAGES,
        timeout_s: float = 60.0,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._limit = page_limit
        self._max_pages = max_pages
        self._timeout_s = timeout_s

    async def pull(
        self, partner: str, url: str, token: str, parties: frozenset[Party]
    ) -> PullResult:
        """Read the whole list at `url` (the partner's tokens endpoint) with our token C."""
        pull = await self._tokens.begin_list(partner)
        skipped = 0
        pages = 0
        origin = _origin(url)
        fetch = asyncio.ensure_future(self._page(url, token, first=True))
        try:
            while True:
                reply = await fetch
                pages += 1
                following = self._following(reply, url, origin, pages)
                if following is not None:  # fetch the next page while this one is stored
                    fetch = asyncio.ensure_future(self._page(following, token, first=False))
                page, refused = self._tokens_of(partner, reply, parties, skipped)
                skipped += refused
                if page:
                    await self._tokens.list_page(partner, pull, page)
                if following is None:
                    break
                url = following
        except BaseException:
            if not fetch.done():
                fetch.cancel()
            elif not fetch.cancelled():
                fetch.exception()  # retrieved: the error that ended the pull is raised
            raise
        replaced = await self._tokens.finish_list(partner, pull)
        log.info(
            "ocpi.tokens_pulled",
            emp=partner,
            total=replaced.total,
            previous=replaced.previous,
            pages=pages,
            skipped=skipped,
        )
        return PullResult(replaced.total, replaced.previous, pages, skipped)

    async def _page(self, url: str, token: str, *, first: bool) -> OcpiReply:
        params = {"offset": "0", "limit": str(self._limit)} if first else None
        try:
            reply = await self._client.request(
                "GET", url, token, timeout_s=self._timeout_s, params=params
            )
        except OcpiCallFailed as exc:
            raise PullFailed(f"{url}: {exc.detail}") from exc
        if not reply.ok:
            raise PullFailed(f"{url}: {reply.detail}")
        if not isinstance(reply.data, list):
            raise PullFailed(f"{url}: data: expected a list of Token objects")
        return reply

    def _following(
        self, reply: OcpiReply, url: str, origin: tuple[str, str], pages: int
    ) -> str | None:
        link = next_link(reply.headers.get("Link") or reply.headers.get("link"))
        if link is None or not reply.data:
            return None
        target = urljoin(url, link)
        if _origin(target) != origin:
            raise PullFailed(f"Link: next page {target!r} is not at {origin[1]}")
        if pages >= self._max_pages:
            raise PullFailed(f"Link: more than {self._max_pages} pages")
        return target

    def _tokens_of(
        self, partner: str, reply: OcpiReply, parties: frozenset[Party], skipped: int
    ) -> tuple[Sequence[PartnerToken], int]:
        page: list[PartnerToken] = []
        refused = 0
        own = {(p.country_code, p.party_id) for p in parties}
        assert isinstance(reply.data, list)
        for i, obj in enumerate(reply.data):
            try:
                token = parse_token(obj)
                if (token.country_code, token.party_id) not in own:
                    raise TokenError("country_code/party_id", "not a party of this partner")
            except TokenError as exc:
                refused += 1
                if skipped + refused <= _LOGGED_SKIPS:
                    log.warning("ocpi.token_skipped", emp=partner, index=i, error=str(exc))
                continue
            page.append(to_partner_token(partner, token))
        return page, refused

    async def keep_pulling(
        self,
        partner: str,
        sender: Callable[[str], Awaitable[tuple[str, str, frozenset[Party]] | None]],
        *,
        every_s: float = NIGHTLY_S,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        may_run: Callable[[], bool] = lambda: True,
    ) -> None:
        """Pull the partner's list as soon as it is registered, then every `every_s`; a
        failed pull is tried again with back-off (doubling from RETRY_FIRST_S, at most
        `every_s`). `sender(partner)`: (tokens URL, our token there, its parties), None
        while there is nobody to ask; `may_run()`: False while another node of a cluster
        pulls (checked before each pull). Runs until cancelled (a tracked task of the
        gateway)."""
        retry = RETRY_FIRST_S
        while True:
            if not may_run():  # another node of the cluster pulls it
                await sleep(WAIT_REGISTERED_S)
                continue
            found = await sender(partner)
            if found is None:
                await sleep(WAIT_REGISTERED_S)
                continue
            url, token, parties = found
            try:
                await self.pull(partner, url, token, parties)
            except (PullFailed, RuntimeError) as exc:  # RuntimeError: superseded by another
                log.warning("ocpi.tokens_pull_failed", emp=partner, error=str(exc), retry_s=retry)
                await sleep(retry)
                retry = min(retry * 2, every_s)
                continue
            retry = RETRY_FIRST_S
            await sleep(every_s)
