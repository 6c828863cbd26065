"""Credentials links with roaming partners that exchange tokens in a handshake: what the
store keeps of them and the port an adapter reads and changes them through.

A link holds the token the partner presents to us (`token_in`), the one we present to it
(`token_out`), the URL it told us to start from (`peer_url`) and what the adapter learned in
the handshake (`details`: opaque to the store and the core, JSON-serialisable). A token that
serves only the handshake is kept as its SHA-256 (`token_a_digest`): the one-time token we
issue for the partner's first call (shown once, when issued), or the token we offer while
our own registration with the partner is under way; it is void once the handshake is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class LinkState(StrEnum):
    UNREGISTERED = "unregistered"  # nothing exchanged yet (or unregistered)
    INVITED = "invited"  # we issued a one-time token; the partner has not used it yet
    REGISTERED = "registered"  # tokens exchanged: both sides can call


@dataclass(frozen=True, slots=True)
class PartnerLink:
    partner: str
    state: LinkState
    token_in: str | None = field(default=None, repr=False)
    token_out: str | None = field(default=None, repr=False)
    peer_url: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    token_a_digest: str | None = field(default=None, repr=False)
    registered_at: float | None = None
    updated_at: float = 0.0
    last_error: str | None = None


class LinkStore(Protocol):
    """What a handshake adapter stores (implemented by store/)."""

    async def link(self, partner: str) -> PartnerLink | None: ...

    async def links(self) -> list[PartnerLink]: ...

    async def link_by_token_digest(self, digest: str) -> PartnerLink | None:
        """The link whose `token_in` or one-time token has this SHA-256 (hex)."""
        ...

    async def save_link(self, link: PartnerLink) -> None: ...

    async def link_failed(self, partner: str, error: str, at: float) -> None:
        """Record why the last handshake attempt failed (the link is otherwise unchanged)."""
        ...
