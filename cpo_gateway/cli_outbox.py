"""`cpo-gateway outbox list|show|retry|purge`: what is owed to and was sent to EMPs."""

from __future__ import annotations

import argparse
import json
import sys
import time

from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.ports import OutboxItem, OutboxState
from cpo_gateway.cli import EXIT_OK, EXIT_USAGE, _with_store
from cpo_gateway.config import Config
from cpo_gateway.store import Store


def cmd_outbox(args: argparse.Namespace) -> int:
    async def run(store: Store, cfg: Config, args: argparse.Namespace) -> int:
        if args.ob_cmd == "list":
            state = "dead" if args.dead else "delivered" if args.delivered else None
            items = await store.list_outbox(state, args.limit)
            for i in items:
                print(
                    f"{i.id}\t{i.state}\t{i.emp}\t{i.kind}\t{i.key}\tattempts={i.attempts}"
                    f"\t{_claim(i)}\t{i.last_error or ''}"
                )
            print(f"{len(items)} row(s)")
            return EXIT_OK
        if args.ob_cmd == "show":
            item = await store.outbox_item(args.id)
            if item is None:
                print("no such row", file=sys.stderr)
                return 1
            print(json.dumps(_outbox_view(item), indent=2, ensure_ascii=False))
            return EXIT_OK
        if args.ob_cmd == "retry":
            if sum((bool(args.ids), args.all_dead, args.all_pending)) != 1:
                print("give row ids, --all-dead or --all-pending", file=sys.stderr)
                return EXIT_USAGE
            if args.all_pending:
                n = await store.retry_pending_now(time.time())
                print(f"{n} pending row(s) due now")
                return EXIT_OK
            n = await store.requeue(None if args.all_dead else args.ids, time.time())
            print(f"{n} row(s) queued again")
            return EXIT_OK
        ok = await store.purge(args.id)
        print("purged" if ok else "no such row")
        return EXIT_OK if ok else 1

    return _with_store(args, run)


def _claim(item: OutboxItem) -> str:
    """Who is delivering the row, for `outbox list` ("-": nobody)."""
    if item.claimed_by is None or item.claimed_until is None:
        return "claim=-"
    return f"claim={item.claimed_by}@{rfc3339(item.claimed_until)}"


def _outbox_view(item: OutboxItem) -> dict[str, object]:
    def when(ts: float | None) -> str | None:
        return None if ts is None else rfc3339(ts)

    return {
        "id": item.id,
        "emp": item.emp,
        "kind": item.kind,
        "key": item.key,
        "state": item.state,
        "attempts": item.attempts,
        "created_at": when(item.created_at),
        "next_attempt_at": when(item.next_at) if item.state is OutboxState.PENDING else None,
        "done_at": when(item.done_at),
        "last_answer": item.last_error,
        # The node delivering it and until when; another node may take it over after that.
        "claimed_by": item.claimed_by,
        "claimed_until": when(item.claimed_until),
        "claim_taken_from": item.taken_from,
        "payload": item.payload,
    }
