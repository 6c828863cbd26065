"""Connected chargers and the typed commands sent to them (the core's ChargerControl).

Every command returns a CommandResult whose status says what happened: accepted, rejected,
not_supported, failed (a CallError), timeout or offline. A charger has at most one of our
Calls in flight (ChargerConnection.call queues the rest), so the commands can be called from
anywhere at any time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from cpo_gateway import logs
from cpo_gateway.bridge.model import AuthStatus, CommandResult, CommandStatus
from cpo_gateway.csms import v16_commands as cmd
from cpo_gateway.csms import v16_security as sec
from cpo_gateway.csms import v201_commands as cmd201
from cpo_gateway.csms import v201_security as sec201
from cpo_gateway.csms.connected201 import Address, Commands201
from cpo_gateway.csms.connection import ChargerConnection
from cpo_gateway.csms.reservations import Reservations
from cpo_gateway.timing import NO_TIMINGS, Timings

log = logs.get(__name__)
DEFAULT_LIST_CHUNK = 100  # when the charger does not tell its SendLocalListMaxLength
_CHUNK_KEY = "SendLocalListMaxLength"  # entries per SendLocalList
_CAPACITY_KEY = "LocalAuthListMaxLength"  # entries the charger's list holds in all
_ENABLED_KEY = "LocalAuthListEnabled"  # "false": the charger does not use a local list
_LIST_KEYS = (_CHUNK_KEY, _CAPACITY_KEY, _ENABLED_KEY)


class ChargerRegistry:
    def __init__(self, timings: Timings = NO_TIMINGS) -> None:
        """`timings`: seconds from a command to the charger's answer, by action."""
        self.connections: dict[str, ChargerConnection] = {}
        self.commands: Counter[tuple[str, CommandStatus]] = Counter()  # (action, result)
        self._timings = timings
        self._renewals: dict[str, asyncio.Future[CommandResult]] = {}
        self._chunk_cache: (
            tuple[Sequence[tuple[str, AuthStatus]], int, list[list[dict[str, object]]]] | None
        ) = None
        self.v201 = Commands201(self, lambda _cp, connector: (connector, 1))
        self.reservations = Reservations(self)

    def use_addresses(self, address: Address) -> None:
        """How a connector number reads as (EVSE, connector on it) for 2.0.1 chargers."""
        self.v201.address = address

    def _conn201(self, cp_id: str) -> ChargerConnection | None:
        conn = self.connections.get(cp_id)
        return conn if conn is not None and conn.v201 else None

    # --- ChargerControl ------------------------------------------------------------------------
    def is_connected(self, charge_point_id: str) -> bool:
        return charge_point_id in self.connections

    def connected_ids(self) -> list[str]:
        return list(self.connections)

    async def command(
        self,
        cp_id: str,
        action: str,
        payload: dict[str, object],
        timeout_s: float | None = None,
        *,
        urgent: bool = False,
    ) -> CommandResult:
        """`urgent`: a partner waits for the answer (see ChargerConnection.call)."""
        conn = self.connections.get(cp_id)
        if conn is None:
            self.commands[action, CommandStatus.OFFLINE] += 1
            return CommandResult(CommandStatus.OFFLINE, "the charger is not connected")
        started = time.perf_counter()
        result = await conn.call(action, payload, timeout_s, urgent=urgent)
        self._timings.labels(action).observe(time.perf_counter() - started)
        self.commands[action, result.status] += 1
        log.info("ocpp.command", charge_point_id=cp_id, action=action, result=result.status.value)
        return result

    async def remote_start(
        self,
        charge_point_id: str,
        connector_id: int | None,
        id_tag: str,
        remote_ref: int | None = None,
    ) -> CommandResult:
        """remote_ref: 2.0.1's remoteStartId (1.6 has none)."""
        if conn := self._conn201(charge_point_id):
            return await self.v201.remote_start(conn, connector_id, id_tag, remote_ref)
        return await self.command(
            charge_point_id,
            "RemoteStartTransaction",
            cmd.remote_start_req(connector_id, id_tag),
            urgent=True,
        )

    async def remote_stop(
        self, charge_point_id: str, transaction_id: int, charger_key: str | None = None
    ) -> CommandResult:
        if conn := self._conn201(charge_point_id):
            return await self.v201.remote_stop(conn, charger_key)
        return await self.command(
            charge_point_id,
            "RemoteStopTransaction",
            cmd.remote_stop_req(transaction_id),
            urgent=True,
        )

    async def trigger_message(
        self, charge_point_id: str, requested_message: str, connector_id: int | None = None
    ) -> CommandResult:
        if conn := self._conn201(charge_point_id):
            return await self.v201.trigger_message(conn, requested_message, connector_id)
        return await self.command(
            charge_point_id,
            "TriggerMessage",
            cmd.trigger_message_req(requested_message, connector_id),
        )

    async def trigger_status(
        self, charge_point_id: str, connector_id: int | None = None
    ) -> CommandResult:
        return await self.trigger_message(charge_point_id, "StatusNotification", connector_id)

    async def trigger_meter_values(self, charge_point_id: str, connector_id: int) -> CommandResult:
        return await self.trigger_message(charge_point_id, "MeterValues", connector_id)

    async def reservation_supported(self, charge_point_id: str) -> bool | None:
        return await self.reservations.supported(charge_point_id)

    async def reserve_now(
        self, charge_point_id: str, connector_id: int, expiry: str, id_tag: str, reservation: int
    ) -> CommandResult:
        return await self.reservations.reserve_now(
            charge_point_id, connector_id, expiry, id_tag, reservation
        )

    async def cancel_reservation(self, charge_point_id: str, reservation: int) -> CommandResult:
        return await self.reservations.cancel(charge_point_id, reservation)

    # --- certificates (OCPP 1.6 security extension, 2.0.1 security) ---------------------------
    async def extended_trigger(
        self, charge_point_id: str, requested_message: str, connector_id: int | None = None
    ) -> CommandResult:
        return await self.command(
            charge_point_id,
            "ExtendedTriggerMessage",
            sec.extended_trigger_req(requested_message, connector_id),
        )

    async def install_certificate(
        self, charge_point_id: str, certificate_type: str, certificate_pem: str
    ) -> CommandResult:
        v201 = self._conn201(charge_point_id) is not None
        build = sec201.install_certificate_req if v201 else sec.install_certificate_req
        return await self.command(
            charge_point_id, "InstallCertificate", build(certificate_type, certificate_pem)
        )

    async def get_installed_certificate_ids(
        self, charge_point_id: str, certificate_types: Sequence[str]
    ) -> CommandResult:
        """No types asks a 2.0.1 charger for all; a 1.6 charger is asked for exactly one."""
        if self._conn201(charge_point_id):
            payload = sec201.get_installed_certificate_ids_req(certificate_types)
        elif len(certificate_types) == 1:
            payload = sec.get_installed_certificate_ids_req(certificate_types[0])
        else:
            raise ValueError("certificateType: a 1.6 charger is asked for exactly one type")
        return await self.command(charge_point_id, "GetInstalledCertificateIds", payload)

    async def delete_certificate(
        self, charge_point_id: str, hash_data: tuple[str, str, str, str]
    ) -> CommandResult:
        return await self.command(
            charge_point_id, "DeleteCertificate", sec.delete_certificate_req(*hash_data)
        )

    async def renew_certificate(self, charge_point_id: str, timeout_s: float) -> CommandResult:
        """Ask the charger for a CSR (1.6: ExtendedTriggerMessage SignChargePointCertificate,
        2.0.1: TriggerMessage SignChargingStationCertificate) and
        wait, at most `timeout_s`, for its answer to the CertificateSigned that follows."""
        if charge_point_id in self._renewals:
            return CommandResult(CommandStatus.REJECTED, "a renewal is already under way")
        waiter: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._renewals[charge_point_id] = waiter
        try:
            conn = self.connections.get(charge_point_id)
            if conn is not None and conn.v201:  # 2.0.1 has no ExtendedTriggerMessage
                asked = await self.command(
                    charge_point_id,
                    "TriggerMessage",
                    {"requestedMessage": "SignChargingStationCertificate"},
                )
            else:
                asked = await self.extended_trigger(charge_point_id, "SignChargePointCertificate")
            if asked.status is not CommandStatus.ACCEPTED:
                return asked
            try:
                async with asyncio.timeout(timeout_s):
                    return await waiter
            except TimeoutError:
                return CommandResult(
                    CommandStatus.TIMEOUT, f"no signed certificate accepted in {timeout_s} s"
                )
        finally:
            self._renewals.pop(charge_point_id, None)

    def certificate_outcome(self, charge_point_id: str, result: CommandResult) -> None:
        """How a charger's certificate request ended: wakes a renew_certificate waiting."""
        waiter = self._renewals.get(charge_point_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    async def change_availability(
        self, charge_point_id: str, connector_id: int, type_: str
    ) -> CommandResult:
        """type_ is "Operative" or "Inoperative"; connector 0 means the whole charger."""
        if conn := self._conn201(charge_point_id):
            return await self.v201.change_availability(conn, connector_id, type_)
        return await self.command(
            charge_point_id, "ChangeAvailability", cmd.change_availability_req(connector_id, type_)
        )

    async def reset(self, charge_point_id: str, type_: str = "Soft") -> CommandResult:
        """type_: Hard or Soft (2.0.1 chargers get Immediate or OnIdle)."""
        if self._conn201(charge_point_id):
            return await self.command(charge_point_id, "Reset", cmd201.reset_req(type_))
        return await self.command(charge_point_id, "Reset", cmd.reset_req(type_))

    async def unlock_connector(self, charge_point_id: str, connector_id: int) -> CommandResult:
        if conn := self._conn201(charge_point_id):
            return await self.v201.unlock_connector(conn, connector_id)
        return await self.command(
            charge_point_id, "UnlockConnector", cmd.unlock_connector_req(connector_id)
        )

    async def get_configuration(
        self, charge_point_id: str, keys: Sequence[str] | None = None
    ) -> CommandResult:
        """data holds configurationKey and unknownKey as the charger sent them."""
        return await self.command(
            charge_point_id, "GetConfiguration", cmd.get_configuration_req(keys)
        )

    async def change_configuration(
        self, charge_point_id: str, key: str, value: str
    ) -> CommandResult:
        result = await self.command(
            charge_point_id, "ChangeConfiguration", cmd.change_configuration_req(key, value)
        )
        conn = self.connections.get(charge_point_id)
        if conn is not None:
            conn.config_cache.pop(key, None)  # read it again next time
        return result

    async def get_local_list_version(self, charge_point_id: str) -> CommandResult:
        """data["listVersion"]: 0 when the list is empty; a charger answering -1 has no local
        list, which reads as not_supported. 2.0.1 answers 0 for no list as well."""
        if self._conn201(charge_point_id):
            return await self.command(charge_point_id, "GetLocalListVersion", {})
        result = await self.command(
            charge_point_id, "GetLocalListVersion", cmd.get_local_list_version_req()
        )
        if result.accepted and result.data.get("listVersion") == -1:
            return CommandResult(CommandStatus.NOT_SUPPORTED, "no local list", result.data)
        return result

    async def send_local_list(
        self, charge_point_id: str, version: int, entries: Sequence[tuple[str, AuthStatus]]
    ) -> CommandResult:
        """A full update, split into chunks of the charger's SendLocalListMaxLength.

        The first chunk is a Full update carrying `version`; each further chunk is a
        Differential update, and OCPP 1.6 wants a differential update to move the list
        version forward, so chunk i carries version + i. data["listVersion"] is the version
        the charger holds afterwards. 2.0.1 chargers: see Commands201.send_local_list.
        """
        if conn := self._conn201(charge_point_id):
            return await self.v201.send_local_list(conn, version, entries)
        size, capacity = await self._list_limits(charge_point_id)
        if capacity is not None and len(entries) > capacity:
            # A Full first chunk would replace the charger's list with a fragment before a
            # later chunk is refused: send nothing, the charger keeps the list it holds.
            detail = (
                f"the list has {len(entries)} entries; the charger holds at most {capacity} "
                f"({_CAPACITY_KEY})"
            )
            return CommandResult(CommandStatus.REJECTED, detail)
        chunks = self._chunks(entries, size)
        result = CommandResult(CommandStatus.ACCEPTED)
        for i, chunk in enumerate(chunks):
            payload: dict[str, object] = {
                "listVersion": version + i,
                "updateType": "Full" if i == 0 else "Differential",
                "localAuthorizationList": chunk,
            }
            result = await self.command(charge_point_id, "SendLocalList", payload)
            if not result.accepted:
                said = result.detail or str(result.data.get("status") or result.status.value)
                detail = f"chunk {i + 1} of {len(chunks)}: {said}"
                return CommandResult(result.status, detail, result.data)
        return CommandResult(
            result.status, result.detail, {**result.data, "listVersion": version + len(chunks) - 1}
        )

    # --- 2.0.1 only ----------------------------------------------------------------------------
    async def get_variables(
        self, charge_point_id: str, items: Sequence[tuple[str, str]]
    ) -> CommandResult:
        """(component, variable) pairs; data["getVariableResult"] as the charger sent it."""
        return await self.command(charge_point_id, "GetVariables", cmd201.get_variables_req(items))

    async def set_variables(
        self, charge_point_id: str, items: Sequence[tuple[str, str, str]]
    ) -> CommandResult:
        """(component, variable, value) triples; data["setVariableResult"] as sent."""
        return await self.command(charge_point_id, "SetVariables", cmd201.set_variables_req(items))

    async def get_base_report(
        self, charge_point_id: str, request_id: int, report_base: str = "FullInventory"
    ) -> CommandResult:
        """The report itself comes as NotifyReport Calls (logged by the handlers)."""
        return await self.command(
            charge_point_id, "GetBaseReport", cmd201.get_base_report_req(request_id, report_base)
        )

    async def get_transaction_status(
        self, charge_point_id: str, charger_key: str | None = None
    ) -> CommandResult:
        conn = self._conn201(charge_point_id)
        if conn is None:
            return CommandResult(CommandStatus.NOT_SUPPORTED, "not a 2.0.1 connection")
        return await self.v201.get_transaction_status(conn, charger_key)

    def _chunks(
        self, entries: Sequence[tuple[str, AuthStatus]], size: int
    ) -> list[list[dict[str, object]]]:
        """The list's chunks, built once for the same entries and size: after a whitelist
        change every connected charger gets the same list."""
        cached = self._chunk_cache
        if cached is not None and cached[0] is entries and cached[1] == size:
            return cached[2]
        items = cmd.send_local_list_req(0, entries)["localAuthorizationList"]
        assert isinstance(items, list)
        chunks = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
        self._chunk_cache = (entries, size, chunks)
        return chunks

    async def local_list_enabled(self, charge_point_id: str) -> bool | None:
        """False when the charger's LocalAuthListEnabled is false; None when it cannot tell
        (not connected, no answer, key unknown). Read with the list limits, once per
        connection."""
        if conn := self._conn201(charge_point_id):
            return await self.v201.local_list_enabled(conn)
        cache = await self._list_config(charge_point_id)
        if cache is None:
            return None
        value = cache.get(_ENABLED_KEY, "").strip().lower()
        return {"true": True, "false": False}.get(value)

    async def _list_limits(self, cp_id: str) -> tuple[int, int | None]:
        """(entries per SendLocalList, entries the list holds or None if not told), asked
        once per connection."""
        cache = await self._list_config(cp_id)
        if cache is None:
            return DEFAULT_LIST_CHUNK, None
        size = _count(cache.get(_CHUNK_KEY, ""), most=100_000) or DEFAULT_LIST_CHUNK
        return size, _count(cache.get(_CAPACITY_KEY, ""), most=10_000_000)

    async def _list_config(self, cp_id: str) -> dict[str, str] | None:
        """The connection's cache of the local-list keys, read from the charger if missing."""
        conn = self.connections.get(cp_id)
        if conn is None:
            return None
        cache = conn.config_cache
        if any(key not in cache for key in _LIST_KEYS):
            result = await self.get_configuration(cp_id, list(_LIST_KEYS))
            keys = result.data.get("configurationKey")
            wanted = {key.lower(): key for key in _LIST_KEYS}  # keys are case-insensitive
            for item in keys if isinstance(keys, list) else []:
                key = (
                    wanted.get(str(item.get("key", "")).lower()) if isinstance(item, dict) else None
                )
                if key is not None:
                    cache[key] = str(item.get("value", ""))
            if result.accepted:
                for key in _LIST_KEYS:
                    cache.setdefault(key, "")  # unknown key: do not ask again
                if cache[_ENABLED_KEY].strip().lower() == "false":
                    # Read once per connection, so said once per connection.
                    log.warning("locallist.disabled_on_charger", charge_point_id=cp_id)
        return cache


def _count(raw: str, most: int) -> int | None:
    """A configuration value that is a sensible list length, else None."""
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= most else None
