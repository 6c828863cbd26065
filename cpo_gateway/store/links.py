"""Credentials links with roaming partners (bridge/links.py): one row per partner.

Tokens the gateway must present or recognise are kept as given (a token we call with cannot
be a digest); each token a partner presents is also indexed by its SHA-256, so a request is
matched by digest and the lookup's timing tells nothing about the token itself.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from cpo_gateway.bridge.links import LinkState, PartnerLink
from cpo_gateway.store.db import Database
from cpo_gateway.store.sql import Row

_SELECT = (
    "SELECT partner, state, token_in, token_out, peer_url, details, token_a_digest, "
    "registered_at, updated_at, last_error FROM partner_links"
)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _link(row: Row | None) -> PartnerLink | None:
    if row is None:
        return None
    details: Any = orjson.loads(row["details"]) if row["details"] else {}
    return PartnerLink(
        partner=row["partner"],
        state=LinkState(row["state"]),
        token_in=row["token_in"],
        token_out=row["token_out"],
        peer_url=row["peer_url"],
        details=details if isinstance(details, dict) else {},
        token_a_digest=row["token_a_digest"],
        registered_at=row["registered_at"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
    )


class LinksRepo:
    db: Database

    async def link(self, partner: str) -> PartnerLink | None:
        return _link(await self.db.one(_SELECT + " WHERE partner = ?", (partner,)))

    async def links(self) -> list[PartnerLink]:
        rows = await self.db.all(_SELECT + " ORDER BY partner")
        return [link for row in rows if (link := _link(row)) is not None]

    async def link_by_token_digest(self, digest: str) -> PartnerLink | None:
        # Every OCPI request authenticates through this: an indexed point read.
        return _link(
            await self.db.one(
                _SELECT
                + " WHERE token_in_digest = ? UNION ALL "
                + _SELECT
                + " WHERE token_a_digest = ? LIMIT 1",
                (digest, digest),
            )
        )

    async def save_link(self, link: PartnerLink) -> None:
        await self.db.write(
            "INSERT INTO partner_links (partner, state, token_in, token_in_digest, token_out, "
            "peer_url, details, token_a_digest, registered_at, updated_at, last_error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (partner) DO UPDATE SET "
            "state = excluded.state, token_in = excluded.token_in, "
            "token_in_digest = excluded.token_in_digest, token_out = excluded.token_out, "
            "peer_url = excluded.peer_url, details = excluded.details, "
            "token_a_digest = excluded.token_a_digest, registered_at = excluded.registered_at, "
            "updated_at = excluded.updated_at, last_error = excluded.last_error",
            (
                link.partner,
                link.state.value,
                link.token_in,
                token_digest(link.token_in) if link.token_in else None,
                link.token_out,
                link.peer_url,
                orjson.dumps(dict(link.details)).decode(),
                link.token_a_digest,
                link.registered_at,
                link.updated_at,
                link.last_error,
            ),
        )

    async def link_failed(self, partner: str, error: str, at: float) -> None:
        await self.db.write(
            "INSERT INTO partner_links (partner, state, details, updated_at, last_error) "
            "VALUES (?, ?, '{}', ?, ?) ON CONFLICT (partner) DO UPDATE SET "
            "last_error = excluded.last_error, updated_at = excluded.updated_at",
            (partner, LinkState.UNREGISTERED.value, at, error[:500]),
        )
