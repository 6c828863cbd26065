"""The core's commands in their OCPP 2.0.1 wire form, for chargers connected with 2.0.1.

ChargerRegistry (connected.py) calls these when the charger's connection speaks 2.0.1, so the
core sends one command whatever the version. Connector numbers are the stations file's;
`address` turns one into the (EVSE, connector on it) a 2.0.1 charger names.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from cpo_gateway import logs
from cpo_gateway.bridge.model import AuthStatus, CommandResult, CommandStatus
from cpo_gateway.csms import v201_commands as cmd
from cpo_gateway.csms.connection import ChargerConnection

if TYPE_CHECKING:
    from cpo_gateway.csms.connected import ChargerRegistry

log = logs.get(__name__)
Address = Callable[[str, int], tuple[int, int]]
DEFAULT_ITEMS = 100  # entries per SendLocalList when the charger does not say
_LIST_VARIABLES = (cmd.ITEMS_PER_MESSAGE, cmd.BYTES_PER_MESSAGE, cmd.ENTRIES, cmd.ENABLED)
# remoteStartId of a start the core did not number (an operator's): unique across restarts
# without storing a counter (seconds since 2024 in the high part, a counter below), within
# the schema's integer, and never one of the core's: those are session rowids
# (store/sessions.py claim_evse), far below OPERATOR_IDS_FROM, and a Started after a
# reconnect is bound by the stored ref alone, so an operator's number equal to one would
# give the operator's start that session's idTag, user and EMP.
_EPOCH = 1_704_067_200
# Remote starts a connection keeps bound by remoteStartId (the newest): a charger accepts
# many it never begins (no car came); a core start older than these still binds by its ref.
MAX_REMOTE_STARTS = 64
OPERATOR_IDS_FROM = 1 << 30
_SPAN_S = (2**31 - 1 - OPERATOR_IDS_FROM) // 1000  # about 12 days, then the numbers repeat


def remote_start_ids(clock: Callable[[], float] = time.time) -> Callable[[], int]:
    counter = itertools.count()
    base = OPERATOR_IDS_FROM + (int(clock()) - _EPOCH) % _SPAN_S * 1000

    def next_id() -> int:
        return base + next(counter) % 1000

    return next_id


class Commands201:
    def __init__(self, registry: ChargerRegistry, address: Address) -> None:
        self._registry = registry
        self.address = address
        self._next_remote_id = remote_start_ids()

    async def remote_start(
        self,
        conn: ChargerConnection,
        connector_id: int | None,
        id_tag: str,
        remote_ref: int | None = None,
    ) -> CommandResult:
        cp = conn.charge_point_id
        evse = None if connector_id is None else self.address(cp, connector_id)[0]
        remote_id = remote_ref or self._next_remote_id()
        # The Started event names it; on another connection the core finds it by remote_ref.
        starts = conn.remote_starts
        starts.pop(remote_id, None)  # a number used again is the newest
        starts[remote_id] = id_tag
        while len(starts) > MAX_REMOTE_STARTS:
            del starts[next(iter(starts))]  # the oldest (dicts keep insertion order)
        result = await self._registry.command(
            cp,
            "RequestStartTransaction",
            cmd.request_start_req(evse, id_tag, remote_id),
            urgent=True,
        )
        if not result.accepted:
            conn.remote_starts.pop(remote_id, None)
        return result

    async def remote_stop(self, conn: ChargerConnection, charger_key: str | None) -> CommandResult:
        if charger_key is None:
            return CommandResult(
                CommandStatus.REJECTED, "the transaction has no id of the charger's to stop it by"
            )
        return await self._registry.command(
            conn.charge_point_id,
            "RequestStopTransaction",
            cmd.request_stop_req(charger_key),
            urgent=True,
        )

    async def trigger_message(
        self, conn: ChargerConnection, requested: str, connector_id: int | None
    ) -> CommandResult:
        cp = conn.charge_point_id
        evse = connector = None
        if connector_id:
            evse, connector = self.address(cp, connector_id)
        if requested == "MeterValues":
            connector = None  # MeterValues is asked per EVSE
        return await self._registry.command(
            cp, "TriggerMessage", cmd.trigger_message_req(requested, evse, connector)
        )

    async def change_availability(
        self, conn: ChargerConnection, connector_id: int, type_: str
    ) -> CommandResult:
        cp = conn.charge_point_id
        evse, connector = (None, None) if connector_id == 0 else self.address(cp, connector_id)
        return await self._registry.command(
            cp, "ChangeAvailability", cmd.change_availability_req(evse, connector, type_)
        )

    async def unlock_connector(self, conn: ChargerConnection, connector_id: int) -> CommandResult:
        cp = conn.charge_point_id
        evse, connector = self.address(cp, connector_id)
        return await self._registry.command(
            cp, "UnlockConnector", cmd.unlock_connector_req(evse, connector)
        )

    async def get_transaction_status(
        self, conn: ChargerConnection, charger_key: str | None
    ) -> CommandResult:
        return await self._registry.command(
            conn.charge_point_id,
            "GetTransactionStatus",
            cmd.get_transaction_status_req(charger_key),
        )

    async def ask_open_transactions(
        self, conn: ChargerConnection, open_here: Sequence[tuple[str, int]]
    ) -> None:
        """After a charger (re)connects: ask about each transaction the gateway holds open
        there, (charger's id, connector). The answer says whether the charger still runs it
        and has events for it queued (which it sends on its own); it is logged for
        operators, and a transaction still running marks its connector busy."""
        for key, connector in open_here:
            result = await self.get_transaction_status(conn, key)
            log.info(
                "charger.transaction_status",
                charge_point_id=conn.charge_point_id,
                charger_key=key,
                result=result.status.value,
                ongoing=result.data.get("ongoingIndicator"),
                queued=result.data.get("messagesInQueue"),
            )
            if result.data.get("ongoingIndicator") is True:
                conn.running.setdefault(connector, key)

    # --- local list ---------------------------------------------------------------------------
    async def list_variables(self, conn: ChargerConnection) -> dict[str, str]:
        """LocalAuthListCtrlr's variables, read once per connection (unknown ones as "")."""
        cache = conn.config_cache
        if any(f"{cmd.LOCAL_LIST_CTRLR}.{v}" not in cache for v in _LIST_VARIABLES):
            result = await self._registry.command(
                conn.charge_point_id,
                "GetVariables",
                cmd.get_variables_req([(cmd.LOCAL_LIST_CTRLR, v) for v in _LIST_VARIABLES]),
            )
            values = cmd.variable_values(result)
            for v in _LIST_VARIABLES:
                got = values.get((cmd.LOCAL_LIST_CTRLR, v))
                if got is not None or result.accepted:
                    cache[f"{cmd.LOCAL_LIST_CTRLR}.{v}"] = got or ""
        return {v: cache.get(f"{cmd.LOCAL_LIST_CTRLR}.{v}", "") for v in _LIST_VARIABLES}

    async def local_list_enabled(self, conn: ChargerConnection) -> bool | None:
        value = (await self.list_variables(conn))[cmd.ENABLED].strip().lower()
        return {"true": True, "false": False}.get(value)

    async def send_local_list(
        self, conn: ChargerConnection, version: int, entries: Sequence[tuple[str, AuthStatus]]
    ) -> CommandResult:
        """A full update in chunks of ItemsPerMessage entries and BytesPerMessage bytes.

        2.0.1 rules: versionNumber > 0, the first chunk Full, each further one Differential
        with a higher version (a differential update at or below the charger's version is a
        VersionMismatch), so chunk i carries version + i; an empty Full list clears it."""
        limits = await self.list_variables(conn)
        size = _count(limits[cmd.ITEMS_PER_MESSAGE], 100_000) or DEFAULT_ITEMS
        max_bytes = _count(limits[cmd.BYTES_PER_MESSAGE], 100_000_000)
        capacity = _count(limits[cmd.ENTRIES], 10_000_000)
        if capacity is not None and len(entries) > capacity:
            return CommandResult(
                CommandStatus.REJECTED,
                f"the list has {len(entries)} entries; the charger holds at most {capacity}",
            )
        version = max(version, 1)
        chunks = chunked(cmd.local_list_entries(entries), size, max_bytes)
        result = CommandResult(CommandStatus.ACCEPTED)
        for i, chunk in enumerate(chunks):
            payload = cmd.send_local_list_req(
                version + i, chunk, "Full" if i == 0 else "Differential"
            )
            result = await self._registry.command(conn.charge_point_id, "SendLocalList", payload)
            if not result.accepted:
                said = result.detail or str(result.data.get("status") or result.status.value)
                return CommandResult(
                    result.status, f"chunk {i + 1} of {len(chunks)}: {said}", result.data
                )
        return CommandResult(
            result.status, result.detail, {**result.data, "listVersion": version + len(chunks) - 1}
        )


_ENVELOPE = 120  # the frame, message id and versionNumber/updateType around the list


def chunked(
    items: list[dict[str, object]], size: int, max_bytes: int | None
) -> list[list[dict[str, object]]]:
    """Items in runs of at most `size`, each run's SendLocalList at most `max_bytes` long
    (an item larger than that alone goes on its own: the charger will say so)."""
    chunks: list[list[dict[str, object]]] = []
    current: list[dict[str, object]] = []
    used = _ENVELOPE
    for item in items:
        length = len(orjson.dumps(item)) + 1
        full = len(current) >= size or (
            max_bytes is not None and current and used + length > max_bytes
        )
        if full:
            chunks.append(current)
            current, used = [], _ENVELOPE
        current.append(item)
        used += length
    chunks.append(current)
    return chunks


def _count(raw: str, most: int) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= most else None
