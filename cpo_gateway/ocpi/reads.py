"""ObjectReads over the store and the stations file: what the OCPI list handlers read.

EVSE statuses are the newest status row owed to the partner (what it has been told or is
about to be), refined by the state the charger last reported for the EVSE's connectors (a
fault tells OUTOFORDER from INOPERATIVE). Sessions and CDRs are the newest outbox row per
session of the partner; delivered ones count until the outbox prunes them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime

from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.model import ConnectorState, EvseStatus
from cpo_gateway.bridge.owed import Owed as Kind
from cpo_gateway.bridge.status import reported_state
from cpo_gateway.ocpi.ports import EvseState, KnownToken, Owed, OwedRows


class StoreReads:
    def __init__(
        self, rows: OwedRows, catalogue: Catalogue, loaded_at: Callable[[], datetime]
    ) -> None:
        self._rows = rows
        self._catalogue = catalogue
        self._loaded_at = loaded_at

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def catalogue_loaded_at(self) -> datetime:
        return self._loaded_at()

    async def evse_states(self, partner: str) -> Mapping[str, EvseState]:
        reported = await self._rows.connector_states()
        states: dict[str, EvseState] = {}
        for emp, evse_id, status, _ in await self._rows.last_statuses():
            if emp != partner or status not in set(EvseStatus):
                continue
            seen = [
                reported.get((c.charge_point, c.connector)) for c in self._catalogue.evse(evse_id)
            ]
            # The same state behind a shared EVSE as the pushed status carries.
            state = reported_state(
                ConnectorState(s) if s in set(ConnectorState) else None for s in seen
            )
            states[evse_id] = EvseState(EvseStatus(status), state)
        return states

    async def known_tokens(
        self, partner: str, user_ids: Collection[str]
    ) -> Mapping[str, KnownToken]:
        known = {}
        for user_id in set(user_ids):
            row = await self._rows.card_token(partner, user_id)
            if row is not None and len(row) == 5:
                known[user_id] = KnownToken(*row)
        return known

    async def sessions(self, partner: str) -> Sequence[Owed]:
        return await self._owed(partner, Kind.SESSION)

    async def cdrs(self, partner: str) -> Sequence[Owed]:
        return await self._owed(partner, Kind.CDR)

    async def _owed(self, partner: str, kind: Kind) -> list[Owed]:
        items = await self._rows.newest_owed(partner, kind.value)
        return [Owed(i.key, i.payload, datetime.fromtimestamp(i.created_at, UTC)) for i in items]
