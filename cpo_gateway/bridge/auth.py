"""Authorization of idTags presented at a charger.

The chain, in order: whitelist of every EMP -> idTags of pending remote starts -> a short-TTL
cache of online answers -> asking the EMPs with online authorization, within a deadline
-> the EMP's offline policy when it cannot be reached.

Partners' tokens (bridge/tokens.py) are listings beside the whitelists, each with its policy:
a valid token answered locally is a whitelist hit, an invalid one is refused (Blocked) by its
owner's word. A token that must be asked online is verified with its owner only (the partner
that issued it), valid or not (its state may have changed since it was pushed); when the
owner cannot be reached the token decides, not the EMP's offline policy: a valid
ONLINE_FIRST token is accepted, an invalid one Blocked, an ONLINE_ONLY one refused.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cpo_gateway import logs
from cpo_gateway.bridge.ids import try_normalise_uid
from cpo_gateway.bridge.model import (
    AuthDecision,
    AuthPath,
    AuthStatus,
    Listing,
    Place,
    TokenPolicy,
    VerifyOutcome,
)
from cpo_gateway.bridge.pending import PendingStarts
from cpo_gateway.bridge.ports import Verifier

log = logs.get(__name__)

_VERIFY_STATUS = {
    VerifyOutcome.ACCEPTED: AuthStatus.ACCEPTED,
    VerifyOutcome.BLOCKED: AuthStatus.BLOCKED,
    VerifyOutcome.UNKNOWN: AuthStatus.INVALID,
    VerifyOutcome.NO_PAYMENT: AuthStatus.INVALID,
    VerifyOutcome.EXPIRED: AuthStatus.EXPIRED,
    VerifyOutcome.NOT_ALLOWED: AuthStatus.INVALID,
}
DEFAULT_VERIFY_TIMEOUT_S = 2.0  # a token's owner the configuration gives no deadline


@dataclass(frozen=True, slots=True)
class EmpPolicy:
    name: str
    online: bool
    accept_when_unreachable: bool
    verify_timeout_s: float


class Authorizer:
    def __init__(
        self,
        emps: Sequence[EmpPolicy],
        link: Verifier,
        listings: Callable[[str], Awaitable[list[Listing]]],
        pending: PendingStarts,
        *,
        cache_ttl_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._emps = tuple(emps)
        self._link = link
        self._lookup = listings
        self._ttl = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, AuthDecision]] = {}
        # Whitelist answers by UID, dropped whenever a whitelist changes (clear_cache): a
        # card seen before is answered without a trip to the database.
        self._listed: dict[str, list[Listing]] = {}
        self._generation = 0
        self._pending = pending  # read only: Remote and Charging change it
        self.decisions: Counter[tuple[AuthPath, AuthStatus]] = Counter()  # for /metrics

    def forget(self, uid: str) -> None:
        self._cache.pop(uid, None)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._listed.clear()
        self._generation += 1

    async def authorize(
        self, id_tag: str, *, online: bool = True, place: Place | None = None
    ) -> AuthDecision:
        """The chain for one idTag; online=False stops before asking an EMP. `place`: where
        it is presented, given to the EMPs asked."""
        return self._count(await self._decide(id_tag, online, place))

    def decide_cached(self, id_tag: str) -> AuthDecision | None:
        """The chain's answer when it needs no I/O: a card looked up since the last whitelist
        change, a pending remote idTag, a cached online answer. None when the chain would
        have to look in the database or ask an EMP."""
        uid = try_normalise_uid(id_tag)
        listings = self._listed.get(uid) if uid is not None else []
        if listings is None:
            return None
        decision = self._from_memory(id_tag, uid, listings)
        return None if decision is None else self._count(decision)

    def _count(self, decision: AuthDecision) -> AuthDecision:
        self.decisions[decision.path, decision.status] += 1
        return decision

    async def _decide(self, id_tag: str, online: bool, place: Place | None) -> AuthDecision:
        uid = try_normalise_uid(id_tag)
        listings: list[Listing] = []
        if uid is not None:
            listed = self._listed.get(uid)
            listings = listed if listed is not None else await self._look_up(uid)
        decision = self._from_memory(id_tag, uid, listings)
        if decision is not None:
            return decision
        owners = [x for x in listings if not x.policy.answered_locally]
        if uid is not None and owners:
            if not online:
                return self._owners_unreachable(uid, owners)
            return await self._ask_owners(uid, owners, place)
        if not online or uid is None:
            return AuthDecision(AuthStatus.INVALID, AuthPath.NONE, None, uid)
        return await self._online(uid, place)

    async def _look_up(self, uid: str) -> list[Listing]:
        """The whitelists and tokens naming `uid`, remembered until the next change."""
        generation = self._generation
        listings = await self._lookup(uid)
        if generation == self._generation:  # no whitelist change while we looked
            if len(self._listed) >= 100_000:  # bounded: forget the oldest tenth
                for key in list(self._listed)[:10_000]:
                    del self._listed[key]
            self._listed[uid] = listings
        return listings

    def _from_memory(
        self, id_tag: str, uid: str | None, listings: list[Listing]
    ) -> AuthDecision | None:
        """Whitelist, pending remote idTags, cached online answers, tokens their owner
        refused; None: ask an EMP."""
        for listing in listings:
            if listing.valid and listing.policy.answered_locally:
                return AuthDecision(AuthStatus.ACCEPTED, AuthPath.WHITELIST, listing.partner, uid)
        remote_emp = self._pending.emp_of(id_tag)
        if remote_emp is not None:
            return AuthDecision(AuthStatus.ACCEPTED, AuthPath.REMOTE, remote_emp, uid)
        if uid is None:
            return AuthDecision(AuthStatus.INVALID, AuthPath.NONE, None, None)
        cached = self._cache.get(uid)
        if cached is not None and cached[0] > self._clock():
            d = cached[1]
            return AuthDecision(d.status, AuthPath.CACHE, d.partner, uid)
        if listings and all(x.policy.answered_locally and not x.valid for x in listings):
            # Every partner that knows the card says, for itself, that it may not charge.
            return AuthDecision(AuthStatus.BLOCKED, AuthPath.WHITELIST, listings[0].partner, uid)
        return None

    def _owners_unreachable(self, uid: str, owners: list[Listing]) -> AuthDecision:
        """No owner could be asked: a token that allows it is accepted locally."""
        for owner in owners:
            if owner.valid and owner.policy is TokenPolicy.ONLINE_FIRST:
                log.warning("auth.token_offline_accept", uid=uid, emp=owner.partner)
                return AuthDecision(AuthStatus.ACCEPTED, AuthPath.POLICY, owner.partner, uid)
        refused = next((o for o in owners if not o.valid), None)
        if refused is not None:
            return AuthDecision(AuthStatus.BLOCKED, AuthPath.POLICY, refused.partner, uid)
        return AuthDecision(AuthStatus.INVALID, AuthPath.POLICY, None, uid)

    async def _ask_owners(
        self, uid: str, owners: list[Listing], place: Place | None
    ) -> AuthDecision:
        """Verify a token with the partners that issued it, each within its deadline."""
        policies = {e.name: e for e in self._emps}
        asked = [
            policies.get(o.partner) or EmpPolicy(o.partner, True, False, DEFAULT_VERIFY_TIMEOUT_S)
            for o in owners
        ]
        results = await asyncio.gather(*(self._verify(e, uid, place) for e in asked))
        for emp, outcome in zip(asked, results, strict=True):
            if outcome is VerifyOutcome.ACCEPTED:
                return self._remember(
                    AuthDecision(AuthStatus.ACCEPTED, AuthPath.ONLINE, emp.name, uid)
                )
        answered = [
            (e, o)
            for e, o in zip(asked, results, strict=True)
            if o is not VerifyOutcome.UNREACHABLE
        ]
        if not answered:
            return self._owners_unreachable(uid, owners)
        emp, outcome = answered[0]
        # The owner knows the token: it owns the refused session whatever it answered.
        return self._remember(AuthDecision(_VERIFY_STATUS[outcome], AuthPath.ONLINE, emp.name, uid))

    async def _online(self, uid: str, place: Place | None) -> AuthDecision:
        online = [e for e in self._emps if e.online]
        if not online:
            return AuthDecision(AuthStatus.INVALID, AuthPath.NONE, None, uid)
        results = await asyncio.gather(*(self._verify(e, uid, place) for e in online))
        for emp, outcome in zip(online, results, strict=True):
            if outcome is VerifyOutcome.ACCEPTED:
                return self._remember(
                    AuthDecision(AuthStatus.ACCEPTED, AuthPath.ONLINE, emp.name, uid)
                )
        for emp, outcome in zip(online, results, strict=True):
            if outcome is VerifyOutcome.UNREACHABLE and emp.accept_when_unreachable:
                log.warning("auth.policy_accept", uid=uid, emp=emp.name)
                return AuthDecision(AuthStatus.ACCEPTED, AuthPath.POLICY, emp.name, uid)
        if all(o is VerifyOutcome.UNREACHABLE for o in results):
            return AuthDecision(AuthStatus.INVALID, AuthPath.POLICY, None, uid)
        emp, outcome = next(
            (e, o)
            for e, o in zip(online, results, strict=True)
            if o is not VerifyOutcome.UNREACHABLE
        )
        # An EMP that knows the card (blocked, no payment) owns the session and its CDR;
        # one that does not know it (unknown) owns nothing.
        owner = None if outcome is VerifyOutcome.UNKNOWN else emp.name
        return self._remember(AuthDecision(_VERIFY_STATUS[outcome], AuthPath.ONLINE, owner, uid))

    async def _verify(self, emp: EmpPolicy, uid: str, place: Place | None) -> VerifyOutcome:
        try:
            async with asyncio.timeout(emp.verify_timeout_s):
                return await self._link.verify(emp.name, uid, place)
        except TimeoutError:
            log.warning("auth.verify_timeout", emp=emp.name, uid=uid)
            return VerifyOutcome.UNREACHABLE

    def _remember(self, decision: AuthDecision) -> AuthDecision:
        if self._ttl > 0 and decision.uid is not None:
            self._cache[decision.uid] = (self._clock() + self._ttl, decision)
            if len(self._cache) > 100_000:  # bounded: drop the oldest insertions
                for key in list(self._cache)[:10_000]:
                    del self._cache[key]
        return decision
