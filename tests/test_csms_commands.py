"""Typed commands to chargers: each command's accepted / rejected / not supported / timeout /
offline result, one Call in flight per charger, chunked local lists, and the admin channel
with its CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from cpo_gateway import admin_cli
from cpo_gateway.bridge.model import AuthStatus, CommandResult, CommandStatus
from cpo_gateway.csms.connected import ChargerRegistry
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import Harness
from tests.test_csms_support import (
    CP,
    RawCharger,
    accept_all,
    config,
    eventually,
    running,
    with_ocpp,
)

TAG = "04A2B3C4"
Send = Callable[[ChargerRegistry], Awaitable[CommandResult]]
COMMANDS: list[tuple[str, Send, dict[str, Any]]] = [
    (
        "RemoteStartTransaction",
        lambda r: r.remote_start(CP, 1, TAG),
        {"idTag": TAG, "connectorId": 1},
    ),
    ("RemoteStopTransaction", lambda r: r.remote_stop(CP, 42), {"transactionId": 42}),
    (
        "SendLocalList",
        lambda r: r.send_local_list(CP, 3, [(TAG, AuthStatus.ACCEPTED)]),
        {
            "listVersion": 3,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": TAG, "idTagInfo": {"status": "Accepted"}}],
        },
    ),
    ("GetLocalListVersion", lambda r: r.get_local_list_version(CP), {}),
    (
        "TriggerMessage",
        lambda r: r.trigger_message(CP, "MeterValues", 2),
        {"requestedMessage": "MeterValues", "connectorId": 2},
    ),
    (
        "ChangeAvailability",
        lambda r: r.change_availability(CP, 0, "Inoperative"),
        {"connectorId": 0, "type": "Inoperative"},
    ),
    ("Reset", lambda r: r.reset(CP, "Hard"), {"type": "Hard"}),
    ("UnlockConnector", lambda r: r.unlock_connector(CP, 2), {"connectorId": 2}),
    (
        "GetConfiguration",
        lambda r: r.get_configuration(CP, ["HeartbeatInterval"]),
        {"key": ["HeartbeatInterval"]},
    ),
    (
        "ChangeConfiguration",
        lambda r: r.change_configuration(CP, "HeartbeatInterval", "120"),
        {"key": "HeartbeatInterval", "value": "120"},
    ),
]


def registry(h: Harness) -> ChargerRegistry:
    assert h.gateway.csms is not None
    return h.gateway.csms.registry


def refuse(action: str, payload: dict[str, Any]) -> dict[str, Any] | list[str] | None:
    """A charger that says no in each command's own way."""
    if action == "GetConfiguration":
        return ["NotSupported", "no configuration here"]
    if action == "GetLocalListVersion":
        return {"listVersion": -1}
    if action == "UnlockConnector":
        return {"status": "UnlockFailed"}
    return {"status": "Rejected"}


async def test_every_command_accepted(tmp_path: Path, emp: SandboxEmp) -> None:
    async with running(config(tmp_path, emp), emp) as h, RawCharger.open(h.ocpp_url) as raw:
        await eventually(lambda: registry(h).is_connected(CP))
        for action, send, payload in COMMANDS:
            result = await send(registry(h))
            assert result.status is CommandStatus.ACCEPTED, (action, result)
            sent = [p for a, p in raw.calls if a == action]
            assert sent[-1] == payload, action
        configuration = await registry(h).get_configuration(CP)
        assert configuration.data == {"configurationKey": [], "unknownKey": []}


async def test_every_command_refused(tmp_path: Path, emp: SandboxEmp) -> None:
    async with (
        running(config(tmp_path, emp), emp) as h,
        RawCharger.open(h.ocpp_url, responder=refuse),
    ):
        await eventually(lambda: registry(h).is_connected(CP))
        outcomes = {action: (await send(registry(h))).status for action, send, _ in COMMANDS}
    not_supported = {"GetConfiguration", "GetLocalListVersion"}
    assert outcomes == {
        action: CommandStatus.NOT_SUPPORTED if action in not_supported else CommandStatus.REJECTED
        for action, _, _ in COMMANDS
    }


async def line_free(h: Harness, raw: RawCharger) -> None:
    """Connected, and the gateway's own TriggerMessage after the connect has run its course
    (the charger does not answer it)."""
    await eventually(lambda: registry(h).is_connected(CP) and len(raw.calls) == 1)
    await eventually(lambda: not registry(h).connections[CP].busy)


async def test_every_command_times_out(tmp_path: Path, emp: SandboxEmp) -> None:
    cfg = config(tmp_path, emp, change=with_ocpp(call_timeout_s=0.2))
    async with running(cfg, emp) as h, RawCharger.open(h.ocpp_url, responder=None) as raw:
        await line_free(h, raw)
        for action, send, _ in COMMANDS:
            result = await send(registry(h))
            assert result.status is CommandStatus.TIMEOUT, (action, result)
            assert "no answer" in result.detail


async def test_a_command_waits_for_the_one_before_it_only_so_long(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    cfg = config(tmp_path, emp, change=with_ocpp(call_timeout_s=0.2))
    async with running(cfg, emp) as h, RawCharger.open(h.ocpp_url, responder=None) as raw:
        await line_free(h, raw)
        first = asyncio.create_task(registry(h).command(CP, "Reset", {"type": "Soft"}, 5.0))
        await eventually(lambda: len(raw.calls) == 2)
        second = await registry(h).command(CP, "UnlockConnector", {"connectorId": 1}, 0.2)
        assert second.status is CommandStatus.TIMEOUT
        assert second.detail == (
            "UnlockConnector waited 0.2 s behind an earlier command to this charger"
        )
        assert not first.done() and [a for a, _ in raw.calls] == ["TriggerMessage", "Reset"]
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        # The line is free again: the next command reaches the charger.
        third = asyncio.create_task(registry(h).trigger_status(CP))
        await eventually(lambda: len(raw.calls) == 3)
        assert raw.calls[2][0] == "TriggerMessage"
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)


async def test_every_command_to_an_absent_charger_is_offline(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with running(config(tmp_path, emp), emp) as h:
        for action, send, _ in COMMANDS:
            result = await send(registry(h))
            assert result.status is CommandStatus.OFFLINE, (action, result)


async def test_a_command_pending_when_the_charger_leaves_is_offline(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with running(config(tmp_path, emp), emp) as h:
        async with RawCharger.open(h.ocpp_url, responder=answer_triggers_only) as raw:
            await raw.wait_calls("TriggerMessage")  # the status resync after connecting
            await eventually(lambda: not registry(h).connections[CP].busy)
            pending = asyncio.create_task(registry(h).reset(CP))
            await raw.wait_calls("Reset")
        assert (await pending).status is CommandStatus.OFFLINE


def answer_triggers_only(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    return accept_all(action, payload) if action == "TriggerMessage" else None


async def test_one_call_in_flight_per_charger(tmp_path: Path, emp: SandboxEmp) -> None:
    async with running(config(tmp_path, emp), emp) as h:
        async with RawCharger.open(h.ocpp_url, responder=answer_triggers_only) as raw:
            await raw.wait_calls("TriggerMessage")  # the status resync after connecting
            tasks = [asyncio.create_task(registry(h).unlock_connector(CP, n)) for n in (1, 2, 3)]
            for n in (1, 2, 3):
                await raw.wait_calls("UnlockConnector", n)
                await asyncio.sleep(0.1)  # room for a second Call to go out, if it could
                assert sum(a == "UnlockConnector" for a, _ in raw.calls) == n
                await raw.answer(raw.call_ids[-1], {"status": "Unlocked"})
            results = await asyncio.gather(*tasks)
        assert [r.status for r in results] == [CommandStatus.ACCEPTED] * 3
        assert [p["connectorId"] for a, p in raw.calls if a == "UnlockConnector"] == [1, 2, 3]


# --- with the simulated charger --------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "status"),
    [
        ("accept", CommandStatus.ACCEPTED),
        ("reject", CommandStatus.REJECTED),
        ("ignore", CommandStatus.TIMEOUT),
    ],
)
async def test_remote_start_with_the_sim_charger(
    tmp_path: Path, emp: SandboxEmp, mode: str, status: CommandStatus
) -> None:
    cfg = config(tmp_path, emp, change=with_ocpp(call_timeout_s=0.5))
    async with running(cfg, emp) as h, h.charger(CP, remote_start=mode) as cp:
        await cp.connect()
        result = await registry(h).remote_start(CP, 1, TAG)
        assert result.status is status
        if mode == "accept":
            await eventually(lambda: 1 in cp.transactions and cp.transactions[1].transaction_id > 0)
            tx = cp.transactions[1].transaction_id
            assert (await registry(h).remote_stop(CP, tx)).accepted
            await eventually(lambda: not cp.transactions)
            assert (await registry(h).remote_stop(CP, tx)).status is CommandStatus.REJECTED


async def test_local_list_is_chunked_by_send_local_list_max_length(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    tags = [f"0000000{i}" for i in range(1, 8)]
    entries = [(t, AuthStatus.ACCEPTED) for t in tags]
    async with (
        running(config(tmp_path, emp), emp) as h,
        h.charger(CP, local_list_max_length=3) as cp,
    ):
        await cp.connect()
        result = await registry(h).send_local_list(CP, 5, entries)
        assert result.accepted and result.data["listVersion"] == 7
        sent = [p for a, p in cp.received if a == "SendLocalList"]
        assert [
            (p["listVersion"], p["updateType"], len(p["localAuthorizationList"])) for p in sent
        ] == [
            (5, "Full", 3),
            (6, "Differential", 3),
            (7, "Differential", 1),
        ]
        assert sorted(cp.local_list) == tags and cp.local_list_version == 7
        assert (await registry(h).get_local_list_version(CP)).data == {"listVersion": 7}


async def test_local_list_longer_than_the_charger_holds(tmp_path: Path, emp: SandboxEmp) -> None:
    entries = [(f"0000000{i}", AuthStatus.ACCEPTED) for i in range(1, 8)]
    async with (
        running(config(tmp_path, emp), emp) as h,
        h.charger(CP, local_list_max_length=3, local_list_capacity=5) as cp,
    ):
        await cp.connect()
        assert (await registry(h).send_local_list(CP, 1, entries[:4])).accepted
        held = sorted(cp.local_list)
        result = await registry(h).send_local_list(CP, 2, entries)
        assert result.status is CommandStatus.REJECTED
        assert result.detail == (
            "the list has 7 entries; the charger holds at most 5 (LocalAuthListMaxLength)"
        )
        # Nothing of the list that cannot fit was sent: the charger keeps the one it holds.
        sent = [p for a, p in cp.received if a == "SendLocalList"]
        assert [p["listVersion"] for p in sent] == [1, 2]
        assert sorted(cp.local_list) == held and cp.local_list_version == 2
        # The charger's answer to GetConfiguration was kept: asked once only.
        assert sum(a == "GetConfiguration" for a, _ in cp.received) == 1


async def test_list_limits_are_read_whatever_the_case_of_the_keys(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    def lowercase_keys(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if action != "GetConfiguration":
            return accept_all(action, payload)
        return {
            "configurationKey": [
                {"key": "sendlocallistmaxlength", "readonly": True, "value": " 2 "},
                {"key": "LOCALAUTHLISTMAXLENGTH", "readonly": True, "value": "3"},
            ]
        }

    entries = [(f"0000000{i}", AuthStatus.ACCEPTED) for i in range(1, 5)]
    async with (
        running(config(tmp_path, emp), emp) as h,
        RawCharger.open(h.ocpp_url, responder=lowercase_keys) as raw,
    ):
        await raw.wait_calls("TriggerMessage")
        refused = await registry(h).send_local_list(CP, 1, entries)
        assert refused.status is CommandStatus.REJECTED and "at most 3" in refused.detail
        assert (await registry(h).send_local_list(CP, 2, entries[:3])).accepted
        sent = [p for a, p in raw.calls if a == "SendLocalList"]
        assert [len(p["localAuthorizationList"]) for p in sent] == [2, 1]


# --- the admin channel and its CLI -----------------------------------------------------------
def cli_json(out: str) -> dict[str, Any]:
    """The last JSON object the CLI printed (the gateway's own logs share stdout here)."""
    lines = out.splitlines()
    end = max(i for i, line in enumerate(lines) if line == "}")
    start = max(i for i, line in enumerate(lines[:end]) if line == "{")
    reply = orjson.loads("\n".join(lines[start : end + 1]))
    assert isinstance(reply, dict)
    return reply


def cli_parser() -> argparse.ArgumentParser:
    """`cpo-gateway charger` with the command subcommand, wired as cli.py does."""
    parser = argparse.ArgumentParser(prog="cpo-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    charger = sub.add_parser("charger")
    charger.add_argument("-c", "--config", required=True)
    chs = charger.add_subparsers(dest="charger_cmd", required=True)
    admin_cli.add_parser(chs)
    charger.set_defaults(fn=lambda args: pytest.fail("the charger default ran"))
    return parser


async def run_cli(cfg_path: Path, *argv: str) -> int:
    args = cli_parser().parse_args(["charger", "-c", str(cfg_path), "command", *argv])
    return int(await asyncio.to_thread(args.fn, args))


async def admin_line(path: Path, line: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(line)
        with contextlib.suppress(ConnectionError):  # a refused over-long line may cut us off
            await writer.drain()
        async with asyncio.timeout(10):
            reply = orjson.loads(await reader.readline())
    finally:
        writer.close()
        await writer.wait_closed()
    assert isinstance(reply, dict)
    return reply


async def test_admin_cli_end_to_end(
    tmp_path: Path, emp: SandboxEmp, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, emp)
    sock = cfg.gateway.state_dir / admin_cli.SOCKET_NAME
    async with running(cfg, emp) as h, h.charger(CP) as cp:
        assert h.gateway.csms is not None
        # The gateway opened the admin socket in its state directory at start.
        assert os.stat(sock).st_mode & 0o777 == 0o600
        await cp.connect()
        capsys.readouterr()
        assert await run_cli(cfg.path, CP, "Reset", "--arg", "type=Soft") == 0
        assert cli_json(capsys.readouterr().out)["status"] == "accepted"
        assert cp.received[-1] == ("Reset", {"type": "Soft"})
        code = await run_cli(
            cfg.path, CP, "GetConfiguration", "--arg", "key=HeartbeatInterval,Nope"
        )
        assert code == 0
        data = cli_json(capsys.readouterr().out)["data"]
        assert data["unknownKey"] == ["Nope"] and data["configurationKey"][0]["value"] == "60"
        read_only = ("--arg", "key=NumberOfConnectors", "--arg", "value=9")
        assert await run_cli(cfg.path, CP, "ChangeConfiguration", *read_only) == 1
        assert await run_cli(cfg.path, CP, "RemoteStartTransaction", "--arg", f"idTag={TAG}") == 0
        await eventually(lambda: 1 in cp.transactions)
        assert await run_cli(cfg.path, "CP-HH-001", "Reset") == 69  # not connected
        assert cli_json(capsys.readouterr().out)["status"] == "offline"
        # Mistakes are refused before anything is sent.
        sent = len(cp.received)
        assert await run_cli(cfg.path, CP, "Reset", "--arg", "type=Warm") == 64
        assert await run_cli(cfg.path, CP, "Reset", "--arg", "kind=Hard") == 64
        assert await run_cli(cfg.path, CP, "UnlockConnector", "--arg", "connectorId=one") == 64
        assert await run_cli(cfg.path, CP, "UnlockConnector") == 64
        assert await run_cli(cfg.path, CP, "Reset", "--arg", "typeHard") == 64
        assert len(cp.received) == sent
        err = capsys.readouterr().err
        assert (
            "Hard or Soft" in err
            and "unknown args kind" in err
            and "connectorId is required" in err
        )
        # The raw protocol: one JSON object per line, errors answered, the line stays usable.
        assert (await admin_line(sock, b"{nope\n"))["status"] == "error"
        assert (await admin_line(sock, b"[1]\n"))["detail"] == "the request must be a JSON object"
        huge = await admin_line(sock, b'{"x": "' + b"y" * 70_000 + b'"}\n')
        assert "longer than" in huge["detail"]
        bad_action = {"charge_point": CP, "action": "StartTransaction"}
        assert (
            "action: expected one of"
            in (await admin_line(sock, orjson.dumps(bad_action) + b"\n"))["detail"]
        )
    # Closed with the gateway: the socket is gone and the CLI says so.
    assert not sock.exists()
    assert await run_cli(cfg.path, CP, "Reset") == 69
    assert "is the gateway running?" in capsys.readouterr().err


async def test_admin_socket_refuses_to_replace_a_live_one(tmp_path: Path) -> None:
    from cpo_gateway.csms.admin import AdminServer

    path = tmp_path / "admin.sock"
    first = AdminServer(ChargerRegistry(), path)
    await first.start()
    try:
        with pytest.raises(OSError, match="another gateway"):
            await AdminServer(ChargerRegistry(), path).start()
    finally:
        await first.close()
    # A socket left by a killed gateway is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    second = AdminServer(ChargerRegistry(), path)
    await second.start()
    assert (await admin_line(path, b'{"charge_point": "X", "action": "Reset"}\n'))["status"] == (
        "offline"
    )
    await second.close()


def test_command_hooks_into_the_cli_parser() -> None:
    """`cpo-gateway charger command` reaches admin_cli; the other charger commands do not."""
    from cpo_gateway import cli

    parser = cli.build_parser()
    args = parser.parse_args(["charger", "-c", "x.toml", "command", CP, "Reset", "--arg", "a=b"])
    assert args.fn is admin_cli.cmd_command
    assert (args.id, args.action, args.arg, args.config) == (CP, "Reset", ["a=b"], "x.toml")
    other = parser.parse_args(["charger", "-c", "x.toml", "hash-password"])
    assert other.fn is cli.cmd_charger


async def test_admin_socket_path_too_long_is_refused_clearly(tmp_path: Path) -> None:
    from cpo_gateway.csms.admin import AdminServer, SocketPathTooLong

    deep = tmp_path / ("d" * 120) / "admin.sock"
    with pytest.raises(SocketPathTooLong, match="too long"):
        await AdminServer(ChargerRegistry(), deep).start()


async def test_admin_socket_follows_the_gateway_lifecycle(tmp_path: Path, emp: SandboxEmp) -> None:
    """The gateway opens `<state_dir>/admin.sock` at start and removes it at stop."""
    cfg = config(tmp_path, emp)
    sock = cfg.gateway.state_dir / admin_cli.SOCKET_NAME
    async with running(cfg, emp) as h, h.charger(CP) as cp:
        await cp.connect()
        reply = await admin_line(sock, b'{"charge_point": "CP-BER-001", "action": "Reset"}\n')
        assert reply["status"] == "accepted" and cp.received[-1] == ("Reset", {"type": "Soft"})
    assert not sock.exists()
