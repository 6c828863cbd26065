"""Reservations on OCPP 1.6 chargers: ReserveNow, CancelReservation, and whether a charger
has the Reservation feature profile at all (its SupportedFeatureProfiles key, read once per
connection). 2.0.1 chargers are not offered reservations yet: they read as unsupported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpo_gateway.bridge.model import CommandResult, CommandStatus
from cpo_gateway.csms import v16_commands as cmd

if TYPE_CHECKING:
    from cpo_gateway.csms.connected import ChargerRegistry

PROFILES_KEY = "SupportedFeatureProfiles"
RESERVATION_PROFILE = "reservation"


def lists_reservation(profiles: str) -> bool:
    """Whether a SupportedFeatureProfiles value (a comma separated list) names Reservation."""
    return RESERVATION_PROFILE in {p.strip().lower() for p in profiles.split(",")}


class Reservations:
    def __init__(self, registry: ChargerRegistry) -> None:
        self._registry = registry

    async def supported(self, charge_point_id: str) -> bool | None:
        """True or False as the charger's SupportedFeatureProfiles says; None when it cannot
        tell (not connected, no answer, no such key). 2.0.1 chargers: False for now."""
        conn = self._registry.connections.get(charge_point_id)
        if conn is None:
            return None
        if conn.v201:
            return False
        cache = conn.config_cache
        if PROFILES_KEY not in cache:
            result = await self._registry.get_configuration(charge_point_id, [PROFILES_KEY])
            keys = result.data.get("configurationKey")
            for item in keys if isinstance(keys, list) else []:
                if (
                    isinstance(item, dict)
                    and str(item.get("key", "")).lower() == "supportedfeatureprofiles"
                ):
                    cache[PROFILES_KEY] = str(item.get("value", ""))
            if not result.accepted:
                return None
            cache.setdefault(PROFILES_KEY, "")  # unknown key: do not ask again
        value = cache[PROFILES_KEY]
        return lists_reservation(value) if value else None

    async def reserve_now(
        self,
        charge_point_id: str,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
    ) -> CommandResult:
        """OCCUPIED or INOPERATIVE when the charger refuses for what the EVSE is doing."""
        if await self.supported(charge_point_id) is False:
            return CommandResult(
                CommandStatus.NOT_SUPPORTED, "the charger has no Reservation profile"
            )
        return await self._registry.command(
            charge_point_id,
            "ReserveNow",
            cmd.reserve_now_req(connector_id, expiry_date, id_tag, reservation_id),
            urgent=True,
        )

    async def cancel(self, charge_point_id: str, reservation_id: int) -> CommandResult:
        """REJECTED: the charger holds no reservation of that id."""
        if await self.supported(charge_point_id) is False:
            return CommandResult(
                CommandStatus.NOT_SUPPORTED, "the charger has no Reservation profile"
            )
        return await self._registry.command(
            charge_point_id,
            "CancelReservation",
            cmd.cancel_reservation_req(reservation_id),
            urgent=True,
        )
