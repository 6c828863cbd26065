"""`cpo-gateway charger command ID ACTION [--arg KEY=VALUE ...]`.

Asks the running gateway, over its local admin socket (`<state_dir>/admin.sock`, see
csms/admin.py), to send one OCPP command to a connected charger, and prints the outcome as
JSON. Argument names are the OCPP 1.6 field names, e.g.::

    cpo-gateway charger command CP-1 Reset --arg type=Hard
    cpo-gateway charger command CP-1 RemoteStartTransaction --arg connectorId=1 --arg idTag=AB12
    cpo-gateway charger command CP-1 GetConfiguration --arg key=HeartbeatInterval,NumberOfConnectors
    cpo-gateway charger command CP-1 InstallCertificate \
        --arg certificateType=CentralSystemRootCertificate --arg certificate=@root.pem

The gateway sends each command in the version of the charger's connection: a 2.0.1 charger
gets the 2.0.1 form (RemoteStartTransaction as RequestStartTransaction, certificate types by
their 2.0.1 names, CentralSystemRootCertificate as CSMSRootCertificate; GetInstalledCertificateIds
without certificateType lists all). A refusal is printed with the charger's status and reason.

Exit codes: 0 accepted, 1 the charger refused (rejected, not supported, failed),
64 bad usage, 69 the gateway or the charger cannot be reached (offline, timeout), 78 bad config.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_CONFIG = 0, 1, 64, 69, 78
SOCKET_NAME = "admin.sock"
MAX_REPLY = 16 * 1024 * 1024
_EXIT = {
    "accepted": EXIT_OK,
    "rejected": EXIT_REFUSED,
    "not_supported": EXIT_REFUSED,
    "failed": EXIT_REFUSED,
    "offline": EXIT_UNAVAILABLE,
    "timeout": EXIT_UNAVAILABLE,
}


def add_parser(charger_commands: Any) -> argparse.ArgumentParser:
    """Add `command` to the `charger` subcommands (an argparse subparsers object)."""
    from cpo_gateway.csms.admin import ACTIONS

    sp: argparse.ArgumentParser = charger_commands.add_parser(
        "command",
        help="send an OCPP command to a connected charger (through the running gateway)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.add_argument("id", help="charge point id")
    sp.add_argument("action", choices=sorted(ACTIONS), metavar="ACTION", help=", ".join(ACTIONS))
    sp.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="an OCPP field")
    sp.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (300)")
    sp.add_argument("--socket", help=f"admin socket (default: <state_dir>/{SOCKET_NAME})")
    sp.set_defaults(fn=cmd_command)
    return sp


def parse_args_list(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg {item!r}: expected KEY=VALUE")
        if value.startswith("@"):  # KEY=@file: the file's text (a PEM certificate)
            try:
                value = Path(value[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"--arg {key}: cannot read {value[1:]} ({exc.strerror})") from exc
        out[key] = value
    return out


def request(path: Path, message: dict[str, object], timeout_s: float) -> dict[str, Any]:
    """One request/response over the admin socket (blocking: this is a CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        buf = bytearray()
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection without an answer")
            buf += chunk
            if len(buf) > MAX_REPLY:
                raise ConnectionError("the answer is too large")
    reply = json.loads(buf)
    if not isinstance(reply, dict):
        raise ConnectionError("the answer is not a JSON object")
    return reply


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    from cpo_gateway.config import ConfigError, load_config

    try:
        cfg = load_config(Path(args.config))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return cfg.gateway.state_dir / SOCKET_NAME


def cmd_command(args: argparse.Namespace) -> int:
    try:
        fields = parse_args_list(args.arg)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = _socket_path(args)
    message = {"charge_point": args.id, "action": args.action, "args": fields}
    try:
        reply = request(path, message, args.timeout)
    except FileNotFoundError:
        print(f"error: no admin socket at {path}: is the gateway running?", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (OSError, ValueError) as exc:  # refused, timed out, broken answer
        print(f"error: {path}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(reply, indent=2, sort_keys=True))
    status = reply.get("status")
    if status == "error":
        print(f"error: {reply.get('detail')}", file=sys.stderr)
        return EXIT_USAGE
    code = _EXIT.get(str(status), EXIT_REFUSED)
    if code != EXIT_OK:  # the JSON says it all; this line says it to the operator
        said = f": {reply.get('detail')}" if reply.get("detail") else ""
        print(f"error: {args.action} to {args.id}: {status}{said}", file=sys.stderr)
    return code
