"""`cpo-gateway chargers list|show ID`: what the database knows of each charger.

Connected and last seen are as the running gateway last recorded them (it records each
connect and disconnect, and marks every charger disconnected when it starts); boot data is
from the last BootNotification; the local list is the whitelist version last pushed and how
that push stands; `show` adds each connector's state as last reported and the status last
queued for the EMPs for its EVSE.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from cpo_gateway.bridge.locallist import list_state
from cpo_gateway.bridge.ports import LocalListRecord
from cpo_gateway.cli_tables import NONE, add_tsv, render, when
from cpo_gateway.config import Config
from cpo_gateway.store import Store
from cpo_gateway.store.reports import ChargerRow

_HEADERS = (
    "charger",
    "connected",
    "last_seen",
    "boot",
    "vendor",
    "model",
    "firmware",
    "booted_at",
    "list_version",
    "list_push",
)


def add_parser(
    sub: Any,
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
    leaf: Callable[..., argparse.ArgumentParser],
) -> None:
    ch = with_config(sub.add_parser("chargers", help="chargers: connection, boot, local list"))
    chs = ch.add_subparsers(dest="chargers_cmd", required=True)
    add_tsv(leaf(chs, "list", help="every charger known to the stations file or the database"))
    show = leaf(chs, "show", help="one charger, with its connectors and EVSE statuses")
    show.add_argument("id", metavar="CHARGE_POINT_ID")
    ch.set_defaults(fn=cmd_chargers)


def cmd_chargers(args: argparse.Namespace) -> int:
    from cpo_gateway.cli import _with_store

    return _with_store(args, _show if args.chargers_cmd == "show" else _list)


def _connected(row: ChargerRow | None) -> str:
    if row is None or row.last_seen is None:
        return "never"
    return "yes" if row.connected else "no"


async def _push_state(store: Store, row: ChargerRow | None, version: int) -> str:
    if row is None:
        return NONE
    record: LocalListRecord = await store.local_list_record(row.id)
    state = list_state(record, version, time.time()).value
    return state if not row.list_result else f"{state} ({row.list_result})"


async def _cells(store: Store, cp_id: str, row: ChargerRow | None, version: int) -> list[object]:
    return [
        cp_id,
        _connected(row),
        when(row.last_seen) if row else None,
        row.boot_status if row else None,
        row.vendor if row else None,
        row.model if row else None,
        row.firmware if row else None,
        row.booted_at if row else None,
        row.list_version if row else None,
        await _push_state(store, row, version),
    ]


async def _list(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    rows = {r.id: r for r in await store.charger_rows()}
    version = await store.whitelist_version()
    ids = sorted(set(rows) | set(cfg.catalogue.charge_point_ids()))
    table = [await _cells(store, cp_id, rows.get(cp_id), version) for cp_id in ids]
    print(render(_HEADERS, table, tsv=args.tsv))
    return 0


async def _show(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    row = await store.charger_row(args.id)
    if row is None and args.id not in cfg.catalogue.charge_point_ids():
        print(f"{args.id}: no such charger", file=sys.stderr)
        return 1
    version = await store.whitelist_version()
    cells = await _cells(store, args.id, row, version)
    for header, value in zip(_HEADERS, cells, strict=True):
        print(f"{header + ':':<14}{NONE if value is None else value}")
    if row is not None:
        print(f"{'serial:':<14}{row.serial or NONE}")
        if row.list_detail:
            print(f"{'list_detail:':<14}{row.list_detail}")
    states = {c.connector: c for c in await store.connector_rows(args.id)}
    evses = await store.evse_status_rows()
    served = {c.connector: c.evse_id for c in cfg.catalogue.connectors_of(args.id)}
    table: list[list[object]] = []
    for n in sorted(set(states) | set(served)):
        state = states.get(n)
        evse = served.get(n)
        posted = evses.get(evse) if evse else None
        table.append(
            [
                n,
                evse,
                state.state if state else None,
                state.error_code if state else None,
                state.reported_at if state else None,
                posted[0] if posted else None,
                when(posted[1]) if posted else None,
            ]
        )
    print()
    headers = ("connector", "evse_id", "state", "error", "reported_at", "evse_status", "changed")
    print(render(headers, table, tsv=False))
    return 0
