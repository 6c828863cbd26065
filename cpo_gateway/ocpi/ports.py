"""What the OCPI object modules read, and who we are: narrow and read-only.

`ObjectReads` is implemented beside the core and the store (app.py wires it): the stations
file as loaded, the EVSE statuses the core holds, and the sessions and CDRs owed to one
partner, as the neutral payloads the outbox carries. The list handlers (locations.py,
tariffs.py, sessions.py, cdrs.py) take it and nothing else.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.model import ConnectorState, EvseStatus
from cpo_gateway.bridge.ports import OutboxItem

if TYPE_CHECKING:
    pass


def stamp(moment: datetime) -> str:
    """An OCPI DateTime: UTC, seconds, 'Z'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class EvseState:
    """An EVSE's status as the core holds it. `reported` is the charger's last connector
    state behind it (it tells a fault from a switched-off EVSE); `updated_at` when the
    status last changed."""

    status: EvseStatus
    reported: ConnectorState | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Owed:
    """A neutral session or CDR payload owed to a partner, and when it last changed."""

    key: str  # the session id or the CDR id
    payload: Mapping[str, Any]
    last_updated: datetime


@dataclass(frozen=True, slots=True)
class KnownToken:
    """A partner's token as it gave it to us (the Tokens module): what a session or CDR
    names the driver by, rather than guessing from the card's uid."""

    country_code: str
    party_id: str
    uid: str
    type: str
    contract_id: str


class ObjectReads(Protocol):
    @property
    def catalogue(self) -> Catalogue: ...

    def catalogue_loaded_at(self) -> datetime:
        """When the stations file in force was loaded: the last_updated of static data."""
        ...

    async def evse_states(self, partner: str) -> Mapping[str, EvseState]:
        """The status of every EVSE as `partner` is told it."""
        ...

    async def sessions(self, partner: str) -> Sequence[Owed]:
        """The latest update of every session of `partner`, oldest change first."""
        ...

    async def cdrs(self, partner: str) -> Sequence[Owed]:
        """Every CDR owed to `partner`, oldest first."""
        ...

    async def known_tokens(
        self, partner: str, user_ids: Collection[str]
    ) -> Mapping[str, KnownToken]:
        """The tokens `partner` gave us for these cards (by card uid); unknown ones left out."""
        ...


class OwedRows(Protocol):
    """What the store offers ObjectReads (store/ implements it; app.py passes the Store)."""

    async def newest_owed(self, emp: str, kind: str) -> list[OutboxItem]:
        """The newest outbox row per key of one partner and kind, any state, oldest first."""
        ...

    async def last_statuses(self) -> list[tuple[str, str, str, str]]: ...

    async def connector_states(self) -> dict[tuple[str, int], str | None]: ...

    async def card_token(self, partner: str, card_uid: str) -> tuple[str, ...] | None:
        """(country_code, party_id, uid, type, contract_id) of the partner's token for the
        card, in its list in force; None when it gave none."""
        ...
