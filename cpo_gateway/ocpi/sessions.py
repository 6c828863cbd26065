"""OCPI Sessions (sender) from the core's neutral session updates (bridge/owed.py).

A SESSION row of the outbox becomes the Session object (the PUT body, and what GET lists)
or, while the session charges, the PATCH body of what changes: `kwh`, `status`,
`last_updated` (and `end_date_time` once it ended). The token is told as a CdrToken of the
eMSP's party: the partner's own token when it gave us the card (its uid, type and
contract_id); else a card (`rfid`) as RFID, a contract id or user name as APP_USER, the id
itself standing in as contract_id. The connector is the one the charger served the session
on, and `auth_method` follows how the core authorized it (a remote start COMMAND, a real-
time check AUTH_REQUEST, a list WHITELIST).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.clock import parse_timestamp
from cpo_gateway.bridge.model import AuthPath, UserKind
from cpo_gateway.bridge.owed import Owed, SessionPhase, SessionUpdate
from cpo_gateway.bridge.tariff import Tariff
from cpo_gateway.ocpi.locations import Place, place_of
from cpo_gateway.ocpi.ports import KnownToken, stamp
from cpo_gateway.ocpi.tariffs import Usage, price_session
from cpo_gateway.ocpi.transport import Party

DEFAULT_CURRENCY = "EUR"  # when the connector has no tariff to take it from
_STATUS = {
    SessionPhase.STARTED: "ACTIVE",
    SessionPhase.CHARGING: "ACTIVE",
    SessionPhase.ENDED: "COMPLETED",
}
# How the core decided the idTag -> OCPI AuthMethod.
_AUTH = {
    AuthPath.REMOTE.value: "COMMAND",
    AuthPath.ONLINE.value: "AUTH_REQUEST",
    AuthPath.WHITELIST.value: "WHITELIST",
    AuthPath.CACHE.value: "WHITELIST",
    AuthPath.POLICY.value: "WHITELIST",
}


class NotRenderable(ValueError):
    """A neutral payload that cannot become this OCPI object (the message says why)."""


@dataclass(frozen=True, slots=True)
class TokenRef:
    """The eMSP's token as a session or CDR names it (CdrToken)."""

    party: Party  # the eMSP that issued it
    uid: str
    type: str  # AD_HOC_USER, APP_USER, OTHER, RFID
    contract_id: str

    def render(self) -> dict[str, str]:
        return {
            "country_code": self.party.country_code,
            "party_id": self.party.party_id,
            "uid": self.uid[:36],
            "type": self.type,
            "contract_id": self.contract_id[:36],
        }


def token_of(
    user_kind: str, user_id: str, emsp: Party, known: Mapping[str, KnownToken] | None = None
) -> TokenRef:
    """The token a session or CDR names: the partner's own when it gave it to us (its uid,
    type and contract_id), else told from the card or id the charger presented."""
    token = None if known is None or user_kind != UserKind.RFID.value else known.get(user_id)
    if token is not None:
        party = Party(token.country_code, token.party_id)
        return TokenRef(party, token.uid, token.type, token.contract_id)
    kind = "RFID" if user_kind == UserKind.RFID.value else "APP_USER"
    return TokenRef(emsp, user_id, kind, user_id)


def card_of(kind: str, payload: Mapping[str, Any]) -> list[str]:
    """The card a session or CDR row names (none for other rows, or another kind of user)."""
    if kind == Owed.SESSION and payload.get("user_kind") == UserKind.RFID.value:
        return [str(payload.get("user_id"))]
    user = payload.get("user") if kind == Owed.CDR else None
    if isinstance(user, Mapping) and user.get("kind") == UserKind.RFID.value:
        return [str(user.get("identifier"))]
    return []


def auth_method(auth_path: object, user_kind: str) -> str:
    if isinstance(auth_path, str) and auth_path in _AUTH:
        return _AUTH[auth_path]
    return "WHITELIST" if user_kind == UserKind.RFID.value else "COMMAND"


def ocpi_time(value: str, field: str) -> str:
    moment = parse_timestamp(value)
    if moment is None:
        raise NotRenderable(f"{field}: not a date-time: {value!r}")
    return stamp(moment)


def seconds_between(start: str, stop: str | None) -> Decimal:
    a, b = parse_timestamp(start), parse_timestamp(stop) if stop else None
    if a is None or b is None:
        return Decimal(0)
    return max(Decimal(0), Decimal(str((b - a).total_seconds())))


class Sessions:
    """Renders session updates for one eMSP."""

    def __init__(
        self,
        catalogue: Catalogue,
        us: Party,
        emsp: Party,
        tokens: Mapping[str, KnownToken] | None = None,
    ) -> None:
        """`tokens`: the partner's tokens of the cards the rendered sessions name."""
        self._catalogue = catalogue
        self._us = us
        self._emsp = emsp
        self.tokens = tokens or {}

    def place(
        self, evse_id: str, charge_point: str | None = None, connector: int | None = None
    ) -> Place:
        """Where a session is: the EVSE's connector its charger served it on, when the
        payload names it (the EVSE's first connector otherwise)."""
        served = next(
            (
                c
                for c in self._catalogue.evse(evse_id)
                if c.charge_point == charge_point and c.connector == connector
            ),
            None,
        )
        place = place_of(self._catalogue, evse_id, served)
        if place is None:
            raise NotRenderable(f"evse_id: {evse_id!r} is in no station of the stations file")
        return place

    def tariff(self, place: Place) -> Tariff | None:
        return self._catalogue.tariff(place.connector.tariff) if place.connector.tariff else None

    def session(
        self, update: SessionUpdate, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The Session object (PUT body). `extra`: the neutral payload's further keys."""
        place = self.place(update.evse_id, update.charge_point, update.connector)
        tariff = self.tariff(place)
        body: dict[str, Any] = {
            "country_code": self._us.country_code,
            "party_id": self._us.party_id,
            "id": update.session_id,
            "start_date_time": ocpi_time(update.start, "start"),
        }
        if update.stop is not None:
            body["end_date_time"] = ocpi_time(update.stop, "stop")
        body |= {
            "kwh": _kwh(update.energy_kwh),
            "cdr_token": token_of(
                update.user_kind, update.user_id, self._emsp, self.tokens
            ).render(),
            "auth_method": auth_method(update.auth_path, update.user_kind),
            "location_id": place.station.id,
            "evse_uid": place.evse_uid,
            "connector_id": place.connector_id,
            "currency": tariff.currency if tariff else DEFAULT_CURRENCY,
        }
        if tariff is not None:
            start = parse_timestamp(update.start)
            end = update.stop or update.updated_at
            if start is not None:
                usage = Usage(
                    start, seconds_between(update.start, end), Decimal(0), _dec(update.energy_kwh)
                )
                body["total_cost"] = price_session(tariff, usage, place.zone).total.render()
        body["status"] = _STATUS[update.phase]
        body["last_updated"] = ocpi_time(update.updated_at, "updated_at")
        return body

    def patch(self, update: SessionUpdate) -> dict[str, Any]:
        """What a running session's PATCH carries."""
        body: dict[str, Any] = {"kwh": _kwh(update.energy_kwh), "status": _STATUS[update.phase]}
        if update.stop is not None:
            body["end_date_time"] = ocpi_time(update.stop, "stop")
        body["last_updated"] = ocpi_time(update.updated_at, "updated_at")
        return body


def _kwh(value: float | None) -> float:
    return round(max(0.0, value), 4) if value is not None else 0.0


def _dec(value: float | None) -> Decimal:
    return Decimal(str(value)) if value is not None and value > 0 else Decimal(0)
