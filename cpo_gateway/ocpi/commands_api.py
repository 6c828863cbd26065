"""The Commands module, Receiver interface: ``POST {commands}/{command}``.

Each command is read at the edge (ocpi/commands.py), placed in the stations file (Location
= station, EVSE uid = its EVSE ID, connector id = its place on the EVSE, "1", "2", ...), and
handed to the core in its own words (bridge/commands.py through the PartnerCommands port).
The CommandResponse comes back at once; the CommandResult follows through the outbox.

A partner acts only as itself: a token of another country/party than the caller's own is
REJECTED, a session of another partner is UNKNOWN_SESSION (as a session that does not
exist: whether another partner's session exists is not the caller's to learn).

A command's `response_url` must be on a host (and port) the partner registered with us: its
versions URL or one of its endpoints. The spec sets no such bound, but without it a partner
could have the gateway POST anywhere its network reaches; any other URL is 2001 naming
`response_url`, and nothing is done.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from cpo_gateway import logs
from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.commands import Answer, Verdict
from cpo_gateway.bridge.core_ports import PartnerCommands
from cpo_gateway.bridge.ids import is_evco_id, try_normalise_uid
from cpo_gateway.bridge.links import PartnerLink
from cpo_gateway.bridge.model import User, UserKind
from cpo_gateway.ocpi.commands import (
    CancelReservation,
    CommandResponseType,
    CommandToken,
    ReserveNow,
    StartSession,
    StopSession,
    TokenType,
    UnlockConnector,
    command_response,
    command_type,
    parse_command,
)
from cpo_gateway.ocpi.locations import evse_uid
from cpo_gateway.ocpi.registration import endpoints_of
from cpo_gateway.ocpi.server import Caller, caller
from cpo_gateway.ocpi.transport import (
    OcpiError,
    OcpiStatus,
    ocpi_json_response,
    read_json,
    timestamp,
)

log = logs.get(__name__)
_RESPONSES = {
    Verdict.ACCEPTED: CommandResponseType.ACCEPTED,
    Verdict.REJECTED: CommandResponseType.REJECTED,
    Verdict.UNKNOWN_SESSION: CommandResponseType.UNKNOWN_SESSION,
    Verdict.NOT_SUPPORTED: CommandResponseType.NOT_SUPPORTED,
}


def user_of(token: CommandToken) -> User:
    """Who the charger is told starts: an RFID card's UID, else the contract id."""
    if token.type is TokenType.RFID and try_normalise_uid(token.uid) is not None:
        return User(UserKind.RFID, token.uid)
    if is_evco_id(token.contract_id):
        return User(UserKind.EVCO_ID, token.contract_id)
    return User(UserKind.CONTRACT_ID, token.contract_id)


class CommandsApi:
    identifier = "commands"
    role = "RECEIVER"

    def __init__(self, commands: PartnerCommands, catalogue: Catalogue) -> None:
        self._commands = commands
        self._catalogue = catalogue

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_post(prefix + "/{command}", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        who = caller(request)
        kind = command_type(request.match_info["command"])
        command = parse_command(kind, await read_json(request))
        _own_host(who, command.response_url)
        answer = await self._dispatch(who, command)
        log.info(
            "ocpi.command",
            command=kind.value,
            verdict=answer.verdict.value,
            detail=answer.detail or None,
        )
        if answer.verdict is Verdict.UNKNOWN_PLACE:
            raise OcpiError(OcpiStatus.UNKNOWN_LOCATION, answer.detail, 404)
        result = _RESPONSES[answer.verdict]
        timeout = answer.timeout_s or self._commands.timeout_s
        return ocpi_json_response(command_response(result, timeout, answer.detail))

    async def _dispatch(
        self,
        who: Caller,
        command: StartSession | StopSession | UnlockConnector | ReserveNow | CancelReservation,
    ) -> Answer:
        emp, url = who.partner, command.response_url
        if isinstance(command, StopSession):
            return await self._commands.stop(emp, command.session_id, url)
        if isinstance(command, CancelReservation):
            return await self._commands.cancel_reservation(emp, command.reservation_id, url)
        if (
            isinstance(command, StartSession | ReserveNow)
            and command.token.party not in who.parties
        ):
            return Answer(
                Verdict.REJECTED,
                f"token.country_code/party_id: {command.token.party} is not a party of yours",
            )
        if isinstance(command, UnlockConnector):
            evse_id = self._evse(command.location_id, command.evse_uid)
            position = _position(command.connector_id)
            return await self._commands.unlock(emp, evse_id, position, url)
        evse_id = self._evse(command.location_id, command.evse_uid)
        if isinstance(command, StartSession):
            if command.connector_id is not None:
                position = _position(command.connector_id)
                if self._commands.connector(evse_id, position) is None:
                    raise OcpiError(
                        OcpiStatus.UNKNOWN_LOCATION,
                        f"connector_id: unknown {command.connector_id!r} on {command.evse_uid}",
                        404,
                    )
            return await self._commands.start(emp, user_of(command.token), evse_id, url)
        expiry = timestamp(command.expiry_date)
        return await self._commands.reserve(
            emp, user_of(command.token), evse_id, command.reservation_id, expiry, url
        )

    def _evse(self, location_id: str, uid: str | None) -> str:
        """The EVSE ID a command names (the Location's only EVSE when `uid` is None)."""
        station = next((s for s in self._catalogue.stations if s.id == location_id), None)
        if station is None:
            raise OcpiError(
                OcpiStatus.UNKNOWN_LOCATION, f"location_id: unknown {location_id!r}", 404
            )
        evses = list(dict.fromkeys(c.evse_id for c in station.connectors))
        if uid is None:
            if len(evses) == 1:
                return evses[0]
            raise OcpiError(
                OcpiStatus.NOT_ENOUGH_INFORMATION,
                f"evse_uid: location {location_id} has {len(evses)} EVSEs, name one",
            )
        for evse_id in evses:
            if evse_uid(evse_id).upper() == uid.upper():
                return evse_id
        raise OcpiError(OcpiStatus.UNKNOWN_LOCATION, f"evse_uid: unknown {uid!r}", 404)


def origin(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL, the scheme's default port when none is written."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def registered_origins(link: PartnerLink) -> frozenset[tuple[str, int]]:
    """The (host, port) pairs a partner registered: its versions URL, its version's URL
    and every endpoint it listed."""
    urls = [link.peer_url, link.details.get("version_url")]
    urls += [e.url for e in endpoints_of(link).endpoints]
    return frozenset(o for u in urls if isinstance(u, str) and (o := origin(u)) is not None)


def _own_host(who: Caller, url: str) -> None:
    origins = registered_origins(who.link)
    if origin(url) not in origins:
        hosts = ", ".join(sorted(f"{h}:{p}" for h, p in origins)) or "none registered"
        raise OcpiError.invalid("response_url", f"a URL on a host you registered ({hosts})", url)


def _position(connector_id: str) -> int:
    if not connector_id.isdigit() or not 1 <= int(connector_id) <= 99:
        raise OcpiError(OcpiStatus.UNKNOWN_LOCATION, f"connector_id: unknown {connector_id!r}", 404)
    return int(connector_id)
