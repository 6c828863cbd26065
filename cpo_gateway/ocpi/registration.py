"""The credentials handshake, both directions (credentials module, 2.2.1).

We register with a partner (we are the Sender): GET its versions URL with its token A, pick
2.2.1, GET the details, store a token B we generate (the partner may call us with it while
our POST is still open), POST our credentials to its credentials endpoint, keep the token C it
answers with, then read its versions and endpoints again with C (the URL it answered).

A partner registers with us (we are the Receiver): `cpo-gateway ocpi token-a NAME` issues a
one-time token A (only its digest is stored); the partner POSTs its credentials with it; we
GET its versions and details with its token B, answer with a token C we generate, and token A
is void from then on. PUT replaces the tokens the same way (a new C); DELETE unregisters.

Tokens are never logged. Everything is in the database: a restarted gateway knows its links.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cpo_gateway import logs
from cpo_gateway.bridge.links import LinkState, LinkStore, PartnerLink
from cpo_gateway.ocpi.client import OcpiCallFailed, OcpiClient
from cpo_gateway.ocpi.credentials import Credentials, CredentialsRole, parse_credentials
from cpo_gateway.ocpi.transport import OcpiError, OcpiStatus, Party
from cpo_gateway.ocpi.versions import (
    VersionDetails,
    details_from_stored,
    parse_details,
    pick_version,
    versions_url,
)

log = logs.get(__name__)


def new_token() -> str:
    """A credentials token: 256 random bits, URL-safe (43 characters, within string(64))."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who we are to partners: our party, our business name, where our versions live."""

    party: Party
    business_name: str
    base_url: Callable[[], str]  # known only once the listener is bound when configured ""

    def credentials(self, token: str) -> Credentials:
        role = CredentialsRole("CPO", self.party, self.business_name)
        return Credentials(token, versions_url(self.base_url()), (role,))


@dataclass(frozen=True, slots=True)
class PartnerSettings:
    """An OCPI partner as configured."""

    name: str
    versions_url: str | None = None
    token_a: str | None = None
    request_timeout_s: float = 30.0


class RegistrationFailed(Exception):
    def __init__(self, partner: str, detail: str) -> None:
        super().__init__(f"{partner}: {detail}")
        self.partner = partner
        self.detail = detail


def parties_of(link: PartnerLink) -> frozenset[Party]:
    """The partner's own parties, from the roles of its credentials."""
    roles = link.details.get("roles")
    found = set()
    if isinstance(roles, list):
        for r in roles:
            if isinstance(r, Mapping):
                found.add(Party(str(r.get("country_code", "")), str(r.get("party_id", ""))))
    return frozenset(found)


def endpoints_of(link: PartnerLink) -> VersionDetails:
    stored = link.details.get("endpoints")
    return details_from_stored(stored if isinstance(stored, Mapping) else {})


def _details(creds: Credentials, version_url: str, details: VersionDetails) -> dict[str, Any]:
    return {
        "version_url": version_url,
        "endpoints": details.as_details(),
        "roles": [
            {
                "role": r.role,
                "country_code": r.party.country_code,
                "party_id": r.party.party_id,
                "business_name": r.business_name,
            }
            for r in creds.roles
        ],
    }


class Registrar:
    """Both directions of the handshake over one link store and one HTTP client."""

    def __init__(
        self,
        store: LinkStore,
        client: OcpiClient,
        identity: Identity,
        partners: Sequence[PartnerSettings],
        *,
        clock: Callable[[], float] = time.time,
        token: Callable[[], str] = new_token,
    ) -> None:
        self._store = store
        self._client = client
        self.identity = identity
        self._partners = {p.name: p for p in partners}
        self._clock = clock
        self._token = token
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def partners(self) -> Mapping[str, PartnerSettings]:
        return self._partners

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # --- we register with the partner ------------------------------------------------------
    async def register(self, name: str) -> PartnerLink:
        """Run the handshake as the Sender; RegistrationFailed says why it did not complete
        (the reason is also stored on the link)."""
        settings = self._partners.get(name)
        if settings is None:
            raise RegistrationFailed(name, "not an OCPI partner in the configuration")
        if not settings.versions_url or not settings.token_a:
            raise RegistrationFailed(name, "versions_url and token_a are needed to register")
        async with self._lock(name):
            try:
                return await self._register(settings, settings.versions_url, settings.token_a)
            except (OcpiCallFailed, OcpiError) as exc:
                detail = exc.detail if isinstance(exc, OcpiCallFailed) else exc.message
                await self._store.link_failed(name, detail, self._clock())
                log.warning("ocpi.registration_failed", partner=name, error=detail)
                raise RegistrationFailed(name, detail) from exc

    async def _register(self, p: PartnerSettings, url: str, token_a: str) -> PartnerLink:
        timeout = p.request_timeout_s
        before = await self._store.link(p.name)
        update = before is not None and before.state is LinkState.REGISTERED and before.token_out
        if update:
            # Registered already: token A is spent; update with the token we hold (PUT).
            assert before is not None and before.token_out is not None
            url, token_a = before.peer_url or url, before.token_out
        version_url = pick_version(await self._client.call("GET", url, token_a, timeout_s=timeout))
        details = parse_details(
            await self._client.call("GET", version_url, token_a, timeout_s=timeout)
        )
        credentials_url = details.url("credentials")
        assert credentials_url is not None  # parse_details requires it
        token_b = self._token()
        now = self._clock()
        # The partner may call our versions with B while the request is open: B counts for
        # the handshake already (as a token A does: versions and credentials only), and the
        # token the partner has keeps working for everything until the exchange is done.
        pending = PartnerLink(
            p.name,
            before.state if before else LinkState.UNREGISTERED,
            token_in=before.token_in if before else None,
            token_out=before.token_out if before else None,
            peer_url=before.peer_url if before and before.peer_url else url,
            details=dict(before.details) if before else {},
            token_a_digest=digest(token_b),
            registered_at=before.registered_at if before else None,
            updated_at=now,
        )
        await self._store.save_link(pending)
        method = "PUT" if update else "POST"
        try:
            answer = await self._client.call(
                method,
                credentials_url,
                token_a,
                self.identity.credentials(token_b).render(),
                timeout_s=timeout,
            )
            theirs = parse_credentials(answer, "data.")
            # Their versions and endpoints again, as token C sees them (the URL answered).
            version_url = pick_version(
                await self._client.call("GET", theirs.url, theirs.token, timeout_s=timeout)
            )
            details = parse_details(
                await self._client.call("GET", version_url, theirs.token, timeout_s=timeout)
            )
        except BaseException:
            # Not exchanged: the partner keeps calling with the token it had.
            await self._store.save_link(
                before or PartnerLink(p.name, LinkState.UNREGISTERED, updated_at=now)
            )
            raise
        link = replace(
            pending,
            state=LinkState.REGISTERED,
            token_in=token_b,
            token_out=theirs.token,
            peer_url=theirs.url,
            details=_details(theirs, version_url, details),
            registered_at=self._clock(),
            updated_at=self._clock(),
            last_error=None,
            token_a_digest=None,
        )
        await self._store.save_link(link)
        log.info("ocpi.registered", partner=p.name, direction="outbound", method=method)
        return link

    async def register_until_done(
        self,
        name: str,
        *,
        first_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> PartnerLink:
        """Retry `register` with exponential back-off and jitter until it succeeds (a
        supervised service at start: a partner that is down now is registered later)."""
        delay = first_delay_s
        while True:
            link = await self._store.link(name)
            if link is not None and link.state is LinkState.REGISTERED:
                return link  # registered meanwhile (from the other side, or the CLI)
            try:
                return await self.register(name)
            except RegistrationFailed:
                pass
            await sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, max_delay_s)

    # --- the partner registers with us ---------------------------------------------------
    async def issue_token_a(self, name: str) -> str:
        """A new one-time token A for the partner (any earlier one is void); shown once."""
        if name not in self._partners:
            raise RegistrationFailed(name, "not an OCPI partner in the configuration")
        link = await self._store.link(name)
        if link is not None and link.state is LinkState.REGISTERED:
            raise RegistrationFailed(
                name, "already registered: it must unregister (DELETE its credentials) first"
            )
        token = self._token()
        await self._store.save_link(
            PartnerLink(
                name,
                LinkState.INVITED,
                token_a_digest=digest(token),
                updated_at=self._clock(),
            )
        )
        log.info("ocpi.token_a_issued", partner=name)
        return token

    async def caller(self, tokens: Sequence[str]) -> tuple[PartnerLink, bool] | None:
        """The link a request's token belongs to, and whether the token is its token A."""
        for token in tokens:
            d = digest(token)
            link = await self._store.link_by_token_digest(d)
            if link is not None and link.partner in self._partners:
                return link, link.token_a_digest == d
        return None

    async def accept(self, link: PartnerLink, body: Any, *, update: bool) -> Credentials:
        """POST (`update` False, with token A) or PUT (with our token): read the partner's
        credentials, use its API with its token, answer ours with a new token."""
        theirs = parse_credentials(body)
        settings = self._partners[link.partner]
        async with self._lock(link.partner):
            try:
                version_url = pick_version(
                    await self._client.call(
                        "GET", theirs.url, theirs.token, timeout_s=settings.request_timeout_s
                    )
                )
                details = parse_details(
                    await self._client.call(
                        "GET", version_url, theirs.token, timeout_s=settings.request_timeout_s
                    )
                )
            except OcpiCallFailed as exc:
                raise OcpiError(
                    OcpiStatus.UNABLE_TO_USE_CLIENT_API,
                    f"url: cannot use your versions endpoint ({exc.detail})",
                    http_status=200,
                ) from exc
            except OcpiError as exc:  # their versions or details are not usable as sent
                raise OcpiError(exc.status, f"url: your versions: {exc.message}", 200) from exc
            token_c = self._token()
            now = self._clock()
            saved = PartnerLink(
                link.partner,
                LinkState.REGISTERED,
                token_in=token_c,
                token_out=theirs.token,
                peer_url=theirs.url,
                details=_details(theirs, version_url, details),
                token_a_digest=None,
                registered_at=now if not update else link.registered_at or now,
                updated_at=now,
            )
            await self._store.save_link(saved)
        log.info(
            "ocpi.registered",
            partner=link.partner,
            direction="inbound",
            method="PUT" if update else "POST",
        )
        return self.identity.credentials(token_c)

    async def unregister(self, link: PartnerLink) -> None:
        """DELETE: both tokens void; the partner needs a new token A to come back."""
        async with self._lock(link.partner):
            await self._store.save_link(
                PartnerLink(link.partner, LinkState.UNREGISTERED, updated_at=self._clock())
            )
        log.info("ocpi.unregistered", partner=link.partner)
