"""Connected chargers and the typed commands sent to them (the core's ChargerControl)."""

from __future__ import annotations

from collections.abc import Sequence

from cpo_gateway import logs
from cpo_gateway.bridge.model import AuthStatus, CommandResult, CommandStatus
from cpo_gateway.csms import v16_commands as cmd
from cpo_gateway.csms.connection import ChargerConnection

log = logs.get(__name__)


class ChargerRegistry:
    def __init__(self) -> None:
        self.connections: dict[str, ChargerConnection] = {}

    # --- ChargerControl ------------------------------------------------------------------------
    def is_connected(self, charge_point_id: str) -> bool:
        return charge_point_id in self.connections

    def connected_ids(self) -> list[str]:
        return list(self.connections)

    async def command(self, cp_id: str, action: str, payload: dict[str, object]) -> CommandResult:
        conn = self.connections.get(cp_id)
        if conn is None:
            return CommandResult(CommandStatus.OFFLINE, "the charger is not connected")
        result = await conn.call(action, payload)
        log.info("ocpp.command", charge_point_id=cp_id, action=action, result=result.status.value)
        return result

    async def remote_start(
        self, charge_point_id: str, connector_id: int, id_tag: str
    ) -> CommandResult:
        return await self.command(
            charge_point_id, "RemoteStartTransaction", cmd.remote_start_req(connector_id, id_tag)
        )

    async def remote_stop(self, charge_point_id: str, transaction_id: int) -> CommandResult:
        return await self.command(
            charge_point_id, "RemoteStopTransaction", cmd.remote_stop_req(transaction_id)
        )

    async def trigger_status(
        self, charge_point_id: str, connector_id: int | None = None
    ) -> CommandResult:
        return await self.command(
            charge_point_id,
            "TriggerMessage",
            cmd.trigger_message_req("StatusNotification", connector_id),
        )

    async def send_local_list(
        self, charge_point_id: str, version: int, entries: Sequence[tuple[str, AuthStatus]]
    ) -> CommandResult:
        """Full update, split into chunks of the charger's SendLocalListMaxLength: the first
        chunk replaces the list, the rest add to it under the same version."""
        size = await self._max_list_length(charge_point_id)
        chunks = [entries[i : i + size] for i in range(0, len(entries), size)] or [[]]
        result = CommandResult(CommandStatus.ACCEPTED)
        for i, chunk in enumerate(chunks):
            kind = "Full" if i == 0 else "Differential"
            result = await self.command(
                charge_point_id, "SendLocalList", cmd.send_local_list_req(version, chunk, kind)
            )
            if not result.accepted:
                return result
        return result

    async def _max_list_length(self, cp_id: str) -> int:
        conn = self.connections.get(cp_id)
        if conn is not None and "SendLocalListMaxLength" not in conn.config_cache:
            result = await self.command(
                cp_id, "GetConfiguration", cmd.get_configuration_req(["SendLocalListMaxLength"])
            )
            keys = result.data.get("configurationKey")
            for item in keys if isinstance(keys, list) else []:
                if isinstance(item, dict) and item.get("key") == "SendLocalListMaxLength":
                    conn.config_cache["SendLocalListMaxLength"] = str(item.get("value", ""))
        raw = conn.config_cache.get("SendLocalListMaxLength", "") if conn else ""
        return int(raw) if raw.isdigit() and int(raw) > 0 else 100
