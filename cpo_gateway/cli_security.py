"""`cpo-gateway charger security-events ID` and `cpo-gateway charger upgrade-profile ID`.

security-events: what the charger reported in SecurityEventNotification (newest first) and
the certificates the gateway signed for it, from the database.

upgrade-profile moves a profile-2 charger to profile 3. Through the running gateway (admin
socket) it asks the charger for a CSR (ExtendedTriggerMessage SignChargePointCertificate),
which the gateway signs with `[ocpp.tls] signing_ca_cert` and sends back in
CertificateSigned; it waits until the charger has accepted that. The profile itself is then
changed by the operator in the stations file: that file is the one reviewed, versioned
statement of each charger's security (a profile switched in the database would make it lie,
and a restore or a second gateway would quietly undo it). The command prints the two steps
left: `security_profile = 3` in the stations file plus a reload, then the charger's own
SecurityProfile key, after which it reconnects with its new certificate.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpo_gateway import admin_cli
from cpo_gateway.cli_tables import render, when
from cpo_gateway.config import Config
from cpo_gateway.store import Store


def add_parsers(charger_commands: Any, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    ev = leaf(charger_commands, "security-events", help="security events a charger reported")
    ev.add_argument("id", metavar="CHARGE_POINT_ID")
    ev.add_argument("--limit", type=int, default=50, help="newest N events (50)")
    ev.set_defaults(fn=cmd_security_events)
    up = leaf(
        charger_commands,
        "upgrade-profile",
        help="give a charger a signed client certificate, to move it to security profile 3",
    )
    up.add_argument("id", metavar="CHARGE_POINT_ID")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (120)")
    up.add_argument("--socket", help="admin socket (default: <state_dir>/admin.sock)")
    up.set_defaults(fn=cmd_upgrade_profile)


def cmd_security_events(args: argparse.Namespace) -> int:
    from cpo_gateway.cli import _with_store

    return _with_store(args, _events)


async def _events(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    events = await store.security_events(args.id, args.limit)
    certs = await store.issued_certificates(args.id)
    if not events and not certs and args.id not in cfg.catalogue.charge_point_ids():
        print(f"{args.id}: no such charger", file=sys.stderr)
        return 1
    rows = [[e.timestamp, e.type, e.tech_info, when(e.received_at)] for e in events]
    print(render(("timestamp", "type", "tech_info", "received"), rows, tsv=False))
    if certs:
        print()
        table = [[c.serial, c.not_after, c.status, when(c.issued_at), c.sha256[:16]] for c in certs]
        print(render(("serial", "not_after", "delivered", "issued", "sha256"), table, tsv=False))
    return 0


def cmd_upgrade_profile(args: argparse.Namespace) -> int:
    path = Path(args.socket) if args.socket else None
    if path is None:
        cfg = _config(args)
        path = cfg.gateway.state_dir / admin_cli.SOCKET_NAME
    message = {
        "charge_point": args.id,
        "action": "RenewCertificate",
        "args": {"timeoutSeconds": max(1, int(args.timeout))},
    }
    try:
        reply = admin_cli.request(path, message, args.timeout + 30)
    except FileNotFoundError:
        print(f"error: no admin socket at {path}: is the gateway running?", file=sys.stderr)
        return admin_cli.EXIT_UNAVAILABLE
    except (OSError, ValueError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return admin_cli.EXIT_UNAVAILABLE
    status = str(reply.get("status"))
    if status != "accepted":
        print(json.dumps(reply, indent=2, sort_keys=True))
        print(f"error: {args.id} has no new certificate: {reply.get('detail')}", file=sys.stderr)
        return admin_cli.EXIT_USAGE if status == "error" else admin_cli._EXIT.get(status, 1)
    stations = _config(args).gateway.stations_file if not args.socket else "the stations file"
    print(f"{args.id} accepted a client certificate signed by the operator CA. Next:")
    print(f"  1. in {stations}, set security_profile = 3 in the [[charger]] of {args.id},")
    print("     then reload the gateway (systemctl reload cpo-gateway, or SIGHUP);")
    print("  2. switch the charger itself, after which it reconnects with the certificate:")
    print(
        f"     cpo-gateway charger command {args.id} ChangeConfiguration"
        " --arg key=SecurityProfile --arg value=3"
    )
    return admin_cli.EXIT_OK


def _config(args: argparse.Namespace) -> Config:
    from cpo_gateway.cli import _load

    return _load(args.config)
