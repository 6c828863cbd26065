"""Partners' tokens: cards and app users a partner says may charge, with how each may be
authorized (`TokenPolicy`). The partner pushes them one by one and lists all of them; the
core keeps them beside the whitelists and gives them to the authorization chain and to the
chargers' local lists.

The policy is the core's own word for what a token allows:

- LOCAL_ONLY: answered from the list, the partner is never asked; in the chargers' lists.
- LOCAL_FIRST: answered from the list (asking online is allowed, never needed); in the
  chargers' lists.
- ONLINE_FIRST: the partner is asked first (within its deadline); the list answers only
  when the partner cannot be reached. In the chargers' lists too: a charger reads its list
  only while it cannot reach the gateway, which is the case where asking the partner is
  impossible and answering locally is what this policy allows.
- ONLINE_ONLY: always asked online; refused when the partner cannot be reached; never in a
  charger's list.

A token that is not valid is never in a charger's list. One answered locally is refused
(Blocked); one that must be asked online is still asked (its state may have changed since),
and is Blocked when the partner cannot be reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.core_ports import TokenSide
from cpo_gateway.bridge.model import Listing, PartnerToken, TokenPolicy, TokensReplaced
from cpo_gateway.bridge.storage import TokenStore, WhitelistStore

log = logs.get(__name__)


class Listings:
    """Every partner's word on a card, for the authorization chain: its whitelists (answered
    locally) and its tokens."""

    def __init__(self, whitelists: WhitelistStore, tokens: TokenStore) -> None:
        self._whitelists = whitelists
        self._tokens = tokens

    async def __call__(self, uid: str) -> list[Listing]:
        listed = [
            Listing(p, TokenPolicy.LOCAL_FIRST, True)
            for p in await self._whitelists.whitelist_partners(uid)
        ]
        return listed + await self._tokens.token_listings(uid)


class TokenBook(TokenSide):
    """The core's part that takes partners' tokens in: each change forgets cached answers;
    a change to what chargers hold is pushed by the local-list job (it runs every minute,
    so a stream of single-token pushes costs one list push per charger, not one each)."""

    def __init__(
        self,
        store: TokenStore,
        *,
        changed: Callable[[bool], None],
        push_all: Callable[[], Coroutine[Any, Any, Any]],
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._changed = changed
        self._push_all = push_all
        self._spawn = spawn
        self._clock = clock
        self._lock = asyncio.Lock()  # one full list at a time per gateway

    async def put_token(self, token: PartnerToken) -> None:
        await self._store.upsert_token(token, self._clock())
        self._changed(False)

    async def get_token(
        self, partner: str, country: str, party: str, uid: str, kind: str | None
    ) -> PartnerToken | None:
        return await self._store.token(partner, country, party, uid, kind)

    async def begin_list(self, partner: str) -> int:
        return await self._store.begin_token_list(partner, self._clock())

    async def list_page(self, partner: str, pull: int, tokens: Sequence[PartnerToken]) -> None:
        await self._store.stage_tokens(partner, pull, tokens)

    async def finish_list(self, partner: str, pull: int) -> TokensReplaced:
        async with self._lock:
            replaced = await self._store.finish_token_list(partner, pull, rfc3339(self._clock()))
        self._changed(True)
        log.info("tokens.replaced", emp=partner, total=replaced.total, previous=replaced.previous)
        self._spawn(self._push_all(), "locallist-push-all")
        return replaced

    async def issued_as(self, partner: str, card_uid: str) -> tuple[str, str] | None:
        return await self._store.issued_as(partner, card_uid)
