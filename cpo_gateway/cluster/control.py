"""Commands to chargers anywhere in the cluster: the core's ChargerControl over the bus.

A command for a charger connected here goes to this node's OCPP side as before. One for a
charger another alive node holds is sent to that node as a `control` call (the command's
name and arguments); that node runs it on its own OCPP side and replies with the result. A
charger no node holds gets what a disconnected charger always got (this node's OCPP side
says offline). No reply within the command's own deadline reads as a charger that did not
answer (timeout).

The operators' admin channel (`cpo-gateway charger ...`) is routed the same way: its request
object travels as an `admin` call and is carried out by the holding node's admin executor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from cpo_gateway.bridge.model import AuthStatus, CommandResult, CommandStatus
from cpo_gateway.bridge.ports import ChargerControl
from cpo_gateway.cluster.presence import Presence
from cpo_gateway.cluster.rpc import CallRefused, Calls

MARGIN_S = 2.0  # the reply's way back, beyond the command's own timeout
LIST_CALLS = 4  # a local-list push may take several calls (chunks, configuration reads)


class LocalChargers(ChargerControl, Protocol):
    """This node's OCPP side: the core's commands and the operators' ones."""

    async def reset(self, charge_point_id: str, type_: str = "Soft") -> CommandResult: ...

    async def change_availability(
        self, charge_point_id: str, connector_id: int, type_: str
    ) -> CommandResult: ...


AdminExecutor = Callable[[object], Awaitable[dict[str, object]]]

_INT, _STR, _OPT_INT, _OPT_STR, _ENTRIES = "int", "str", "int?", "str?", "entries"
# Each forwarded method and the types of its arguments after the charge point id.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "remote_start": (_OPT_INT, _STR, _OPT_INT),
    "remote_stop": (_INT, _OPT_STR),
    "send_local_list": (_INT, _ENTRIES),
    "trigger_status": (_OPT_INT,),
    "trigger_meter_values": (_INT,),
    "local_list_enabled": (),
    "unlock_connector": (_INT,),
    "reservation_supported": (),
    "reserve_now": (_INT, _STR, _STR, _INT),
    "cancel_reservation": (_INT,),
    "reset": (_STR,),
    "change_availability": (_INT, _STR),
}
_ANSWERS_FLAG = frozenset({"local_list_enabled", "reservation_supported"})
_STATUSES = frozenset(CommandStatus)


def _arg(method: str, i: int, kind: str, value: object) -> object:
    where = f"body.a[{i}] of {method}"
    if kind in (_OPT_INT, _OPT_STR) and value is None:
        return None
    if kind in (_INT, _OPT_INT):
        if isinstance(value, bool) or not isinstance(value, int):
            raise CallRefused(f"{where}: expected an integer, got {value!r:.40}")
        return value
    if kind in (_STR, _OPT_STR):
        if not isinstance(value, str):
            raise CallRefused(f"{where}: expected a string, got {value!r:.40}")
        return value
    entries: list[tuple[str, AuthStatus]] = []
    if not isinstance(value, list):
        raise CallRefused(f"{where}: expected a list of [idTag, status]")
    for entry in value:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise CallRefused(f"{where}: expected a list of [idTag, status]")
        try:
            entries.append((entry[0], AuthStatus(entry[1])))
        except ValueError:
            raise CallRefused(f"{where}: unknown status {entry[1]!r:.40}") from None
    return entries


def read_call(body: dict[str, Any]) -> tuple[str, str, list[object]]:
    """(method, charge point, arguments) of a `control` call's body, or CallRefused."""
    method, cp, args = body.get("m"), body.get("cp"), body.get("a")
    if not isinstance(method, str) or method not in SIGNATURES:
        raise CallRefused(f"body.m: expected one of {', '.join(SIGNATURES)}, got {method!r:.40}")
    if not isinstance(cp, str) or not cp:
        raise CallRefused("body.cp: expected a charge point id")
    kinds = SIGNATURES[method]
    if not isinstance(args, list) or len(args) != len(kinds):
        raise CallRefused(f"body.a: expected {len(kinds)} arguments for {method}")
    return (
        method,
        cp,
        [_arg(method, i, k, v) for i, (k, v) in enumerate(zip(kinds, args, strict=True))],
    )


def _result(raw: dict[str, Any] | None, node: str) -> CommandResult:
    if raw is None:
        return CommandResult(CommandStatus.TIMEOUT, f"node {node} did not answer in time")
    status, detail, data = raw.get("status"), raw.get("detail"), raw.get("data")
    if status not in _STATUSES:
        return CommandResult(CommandStatus.FAILED, f"node {node}: {detail or status!r}")
    return CommandResult(
        CommandStatus(status),
        detail if isinstance(detail, str) else "",
        data if isinstance(data, dict) else {},
    )


class ClusterControl:
    """ChargerControl (and the operators' commands) for chargers on any node."""

    def __init__(
        self,
        local: LocalChargers,
        presence: Presence,
        calls: Calls,
        *,
        call_timeout_s: float,
        before_start: Callable[[], Awaitable[None]],
    ) -> None:
        """`before_start`: run before a remote start another node asked for (the core learns
        that node's pending start, so the charger's StartTransaction is bound to it here)."""
        self._local = local
        self._presence = presence
        self._calls = calls
        self._wait_s = call_timeout_s + MARGIN_S
        self._before_start = before_start
        self.forwarded = 0

    def is_connected(self, charge_point_id: str) -> bool:
        return (
            self._local.is_connected(charge_point_id)
            or self._presence.node_of(charge_point_id) is not None
        )

    def node_of(self, charge_point_id: str) -> str | None:
        """The other node to send a command to; None: this node's OCPP side answers."""
        if self._local.is_connected(charge_point_id):
            return None
        return self._presence.node_of(charge_point_id)

    async def _forward(
        self, node: str, method: str, cp: str, *args: object
    ) -> dict[str, Any] | None:
        self.forwarded += 1
        wait = self._wait_s * (LIST_CALLS if method == "send_local_list" else 1)
        return await self._calls.call(
            node, "control", {"m": method, "cp": cp, "a": list(args)}, wait
        )

    async def _command(self, method: str, cp: str, *args: object) -> CommandResult:
        node = self.node_of(cp)
        if node is None:
            result: CommandResult = await getattr(self._local, method)(cp, *args)
            return result
        return _result(await self._forward(node, method, cp, *args), node)

    async def _flag(self, method: str, cp: str) -> bool | None:
        node = self.node_of(cp)
        if node is None:
            flag: bool | None = await getattr(self._local, method)(cp)
            return flag
        raw = await self._forward(node, method, cp)
        value = None if raw is None else raw.get("value")
        return value if isinstance(value, bool) else None

    # --- ChargerControl ------------------------------------------------------------------------
    async def remote_start(
        self, charge_point_id: str, connector_id: int, id_tag: str, remote_ref: int | None = None
    ) -> CommandResult:
        return await self._command(
            "remote_start", charge_point_id, connector_id, id_tag, remote_ref
        )

    async def remote_stop(
        self, charge_point_id: str, transaction_id: int, charger_key: str | None = None
    ) -> CommandResult:
        return await self._command("remote_stop", charge_point_id, transaction_id, charger_key)

    async def send_local_list(
        self, charge_point_id: str, version: int, entries: Sequence[tuple[str, AuthStatus]]
    ) -> CommandResult:
        if self.node_of(charge_point_id) is None:
            return await self._local.send_local_list(charge_point_id, version, entries)
        pairs = [[tag, status.value] for tag, status in entries]
        return await self._command("send_local_list", charge_point_id, version, pairs)

    async def trigger_status(
        self, charge_point_id: str, connector_id: int | None = None
    ) -> CommandResult:
        return await self._command("trigger_status", charge_point_id, connector_id)

    async def trigger_meter_values(self, charge_point_id: str, connector_id: int) -> CommandResult:
        return await self._command("trigger_meter_values", charge_point_id, connector_id)

    async def local_list_enabled(self, charge_point_id: str) -> bool | None:
        return await self._flag("local_list_enabled", charge_point_id)

    async def unlock_connector(self, charge_point_id: str, connector_id: int) -> CommandResult:
        return await self._command("unlock_connector", charge_point_id, connector_id)

    async def reservation_supported(self, charge_point_id: str) -> bool | None:
        return await self._flag("reservation_supported", charge_point_id)

    async def reserve_now(
        self, charge_point_id: str, connector_id: int, expiry: str, id_tag: str, reservation: int
    ) -> CommandResult:
        return await self._command(
            "reserve_now", charge_point_id, connector_id, expiry, id_tag, reservation
        )

    async def cancel_reservation(self, charge_point_id: str, reservation: int) -> CommandResult:
        return await self._command("cancel_reservation", charge_point_id, reservation)

    # --- the operators' commands ---------------------------------------------------------------
    async def reset(self, charge_point_id: str, type_: str = "Soft") -> CommandResult:
        return await self._command("reset", charge_point_id, type_)

    async def change_availability(
        self, charge_point_id: str, connector_id: int, type_: str
    ) -> CommandResult:
        return await self._command("change_availability", charge_point_id, connector_id, type_)

    # --- the callee's side ---------------------------------------------------------------------
    async def serve(self, body: dict[str, Any]) -> dict[str, Any]:
        """Carry out a `control` call another node sent, on this node's OCPP side."""
        method, cp, args = read_call(body)
        if method == "remote_start":
            await self._before_start()
        answer = await getattr(self._local, method)(cp, *args)
        if method in _ANSWERS_FLAG:
            return {"value": answer}
        assert isinstance(answer, CommandResult)
        return {"status": answer.status.value, "detail": answer.detail, "data": answer.data}


class AdminRoute:
    """The admin channel's requests, carried out by the node that holds the charger."""

    def __init__(
        self, local: AdminExecutor, control: ClusterControl, calls: Calls, *, call_timeout_s: float
    ) -> None:
        self._local = local
        self._control = control
        self._calls = calls
        self._wait_s = call_timeout_s + MARGIN_S

    async def __call__(self, request: object) -> dict[str, object]:
        cp = request.get("charge_point") if isinstance(request, dict) else None
        node = self._control.node_of(cp) if isinstance(cp, str) and cp else None
        if node is None or not isinstance(request, dict):
            return await self._local(request)
        wait = self._wait_s
        args = request.get("args")
        if request.get("action") == "RenewCertificate" and isinstance(args, dict):
            timeout = args.get("timeoutSeconds")
            wait = (float(timeout) if isinstance(timeout, int | float) else 120.0) + MARGIN_S
        raw = await self._calls.call(node, "admin", request, wait)
        if raw is None:
            return {
                "status": "timeout",
                "detail": f"node {node} did not answer in time",
                "data": {},
            }
        return dict(raw)

    async def serve(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._local(body))
