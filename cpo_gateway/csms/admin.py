"""The local admin channel: operators send typed commands to connected chargers.

A unix socket in the state directory, mode 0600 (only the gateway's own user may connect),
speaking one JSON object per line in each direction::

    {"charge_point": "CP-1", "action": "Reset", "args": {"type": "Soft"}}
    {"status": "accepted", "detail": "", "data": {"status": "Accepted"}}

`status` is a CommandStatus value (accepted, rejected, not_supported, failed, timeout,
offline), or "error" when the request itself cannot be carried out; `detail` then says why.
Argument names are the OCPP 1.6 field names; values may be strings (as typed on a command
line) where the field is an integer or a list (comma separated).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

from cpo_gateway import logs
from cpo_gateway.bridge.model import AuthStatus, CommandResult
from cpo_gateway.csms.connected import ChargerRegistry

log = logs.get(__name__)
MAX_LINE = 64 * 1024
_MISSING = object()
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes, one for the NUL


class AdminError(Exception):
    """A request that cannot be carried out; the message goes back as `detail`."""


class SocketPathTooLong(OSError):
    """The socket path does not fit a sockaddr_un (108 bytes)."""


class Args:
    """The `args` object of a request, read field by field; unknown fields are an error."""

    def __init__(self, action: str, raw: dict[str, Any]) -> None:
        self._action = action
        self._raw = raw
        self._used: set[str] = set()

    def _get(self, name: str, required: bool) -> object:
        self._used.add(name)
        value = self._raw.get(name)
        if value is None and required:
            raise AdminError(f"{self._action}: args.{name} is required")
        return value

    def integer(self, name: str, *, required: bool = True) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if type(value) is int:
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise AdminError(f"{self._action}: args.{name}: expected an integer, got {value!r}")

    def text(self, name: str, *, required: bool = True) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
        raise AdminError(f"{self._action}: args.{name}: expected a string, got {value!r}")

    def strings(self, name: str) -> list[str] | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise AdminError(f"{self._action}: args.{name}: expected a list of strings")

    def finish(self) -> None:
        unknown = sorted(set(self._raw) - self._used)
        if unknown:
            raise AdminError(f"{self._action}: unknown args {', '.join(unknown)}")


# Each action reads its args and returns the command, not yet started, so that unknown
# args are refused before anything is sent.
Command = Coroutine[Any, Any, CommandResult]
Run = Callable[[ChargerRegistry, str, Args], Command]


def _int(a: Args, name: str) -> int:
    value = a.integer(name)
    assert value is not None  # required
    return value


def _str(a: Args, name: str) -> str:
    value = a.text(name)
    assert value is not None  # required
    return value


def _remote_start(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.remote_start(cp, a.integer("connectorId", required=False), _str(a, "idTag"))


def _remote_stop(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.remote_stop(cp, _int(a, "transactionId"))


def _send_local_list(r: ChargerRegistry, cp: str, a: Args) -> Command:
    tags = a.strings("idTags") or []
    return r.send_local_list(cp, _int(a, "listVersion"), [(t, AuthStatus.ACCEPTED) for t in tags])


def _get_local_list_version(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.get_local_list_version(cp)


def _trigger(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.trigger_message(
        cp, _str(a, "requestedMessage"), a.integer("connectorId", required=False)
    )


def _availability(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.change_availability(cp, _int(a, "connectorId"), _str(a, "type"))


def _reset(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.reset(cp, a.text("type", required=False) or "Soft")


def _unlock(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.unlock_connector(cp, _int(a, "connectorId"))


def _get_configuration(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.get_configuration(cp, a.strings("key"))


def _change_configuration(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.change_configuration(cp, _str(a, "key"), _str(a, "value"))


def _variable(action: str, name: str) -> tuple[str, str]:
    """`Component/Variable` (a `/` never occurs in an OCPP 2.0.1 identifierString)."""
    component, sep, variable = name.partition("/")
    if not sep or not component.strip() or not variable.strip() or "/" in variable:
        raise AdminError(f"{action}: args.variable: expected Component/Variable, got {name!r}")
    return component.strip(), variable.strip()


def _get_variables(r: ChargerRegistry, cp: str, a: Args) -> Command:
    names = a.strings("variable")
    if not names:
        raise AdminError("GetVariables: args.variable is required (Component/Variable, ...)")
    return r.get_variables(cp, [_variable("GetVariables", n) for n in names])


def _set_variables(r: ChargerRegistry, cp: str, a: Args) -> Command:
    component, variable = _variable("SetVariables", _str(a, "variable"))
    return r.set_variables(cp, [(component, variable, _str(a, "value"))])


def _get_base_report(r: ChargerRegistry, cp: str, a: Args) -> Command:
    base = a.text("reportBase", required=False) or "FullInventory"
    if base not in ("ConfigurationInventory", "FullInventory", "SummaryInventory"):
        raise AdminError(f"GetBaseReport: args.reportBase: unknown report {base!r}")
    return r.get_base_report(cp, a.integer("requestId", required=False) or 1, base)


def _extended_trigger(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.extended_trigger(
        cp, _str(a, "requestedMessage"), a.integer("connectorId", required=False)
    )


def _install_certificate(r: ChargerRegistry, cp: str, a: Args) -> Command:
    return r.install_certificate(cp, _str(a, "certificateType"), _str(a, "certificate"))


def _installed_ids(r: ChargerRegistry, cp: str, a: Args) -> Command:
    """certificateType: one, or for a 2.0.1 charger several (comma separated) or none (all)."""
    return r.get_installed_certificate_ids(cp, a.strings("certificateType") or [])


def _delete_certificate(r: ChargerRegistry, cp: str, a: Args) -> Command:
    names = ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")
    algorithm, name_hash, key_hash, serial = (_str(a, n) for n in names)
    return r.delete_certificate(cp, (algorithm, name_hash, key_hash, serial))


def _renew_certificate(r: ChargerRegistry, cp: str, a: Args) -> Command:
    """Not an OCPP action: ExtendedTriggerMessage, then the CertificateSigned outcome."""
    return r.renew_certificate(cp, float(a.integer("timeoutSeconds", required=False) or 120))


ACTIONS: dict[str, Run] = {
    "RemoteStartTransaction": _remote_start,
    "RemoteStopTransaction": _remote_stop,
    "SendLocalList": _send_local_list,
    "GetLocalListVersion": _get_local_list_version,
    "TriggerMessage": _trigger,
    "ChangeAvailability": _availability,
    "Reset": _reset,
    "UnlockConnector": _unlock,
    "GetConfiguration": _get_configuration,
    "ChangeConfiguration": _change_configuration,
    "GetVariables": _get_variables,
    "SetVariables": _set_variables,
    "GetBaseReport": _get_base_report,
    "ExtendedTriggerMessage": _extended_trigger,
    "InstallCertificate": _install_certificate,
    "GetInstalledCertificateIds": _installed_ids,
    "DeleteCertificate": _delete_certificate,
    "RenewCertificate": _renew_certificate,
}


def _error(detail: str) -> dict[str, object]:
    return {"status": "error", "detail": detail, "data": {}}


async def execute(registry: ChargerRegistry, request: object) -> dict[str, object]:
    """Carry out one decoded request; never raises."""
    if not isinstance(request, dict):
        return _error("the request must be a JSON object")
    cp_id, action, raw = request.get("charge_point"), request.get("action"), request.get("args")
    if not isinstance(cp_id, str) or not cp_id:
        return _error("charge_point: expected a charge point id")
    if not isinstance(action, str) or action not in ACTIONS:
        return _error(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    if raw is not None and not isinstance(raw, dict):
        return _error("args: expected an object")
    args = Args(action, raw or {})
    try:
        command = ACTIONS[action](registry, cp_id, args)
    except AdminError as exc:
        return _error(str(exc))
    try:
        args.finish()
        result = await command
    except (AdminError, ValueError) as exc:  # builders raise ValueError on what OCPP forbids
        command.close()  # not started when finish() refused it
        return _error(str(exc))
    log.info("admin.command", charge_point_id=cp_id, action=action, result=result.status.value)
    return {"status": result.status.value, "detail": result.detail, "data": result.data}


Route = Callable[[object], Awaitable[dict[str, object]]]


class AdminServer:
    def __init__(
        self,
        registry: ChargerRegistry,
        path: Path,
        *,
        idle_timeout_s: float = 300.0,
        route: Route | None = None,
    ) -> None:
        """`route`: carries out a request instead of this registry (a cluster sends it to
        the node that holds the charger)."""
        self._route: Route = route or functools.partial(execute, registry)
        self.path = path
        self._idle_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            raise SocketPathTooLong(f"admin socket path is too long for a unix socket: {self.path}")
        _remove_stale(self.path)
        server = await asyncio.start_unix_server(
            self._client, path=str(self.path), limit=MAX_LINE, start_serving=False
        )
        # Restrict the socket before it listens: nobody can connect while it is still open
        # to the umask.
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino
        await server.start_serving()
        self._server = server
        log.info("admin.listening", path=str(self.path))

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await server.wait_closed()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:  # never remove a successor's socket
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle_s):
                        line = await reader.readline()
                except (TimeoutError, ConnectionError):
                    break
                except ValueError:  # over MAX_LINE: the stream cannot be resynchronised
                    await _write(writer, _error(f"request longer than {MAX_LINE} bytes"))
                    break
                if not line:
                    break
                try:
                    request = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    reply = _error(f"not JSON: {exc}")
                else:
                    reply = await self._route(request)
                if not await _write(writer, reply):
                    break
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _write(writer: asyncio.StreamWriter, reply: dict[str, object]) -> bool:
    try:
        writer.write(orjson.dumps(reply) + b"\n")
        await writer.drain()
    except ConnectionError:
        return False
    return True


def _remove_stale(path: Path) -> None:
    """Remove a socket left by a gateway that died; refuse to steal a live one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: left over
        return
    finally:
        probe.close()
    raise OSError(f"another gateway is listening on {path}")
