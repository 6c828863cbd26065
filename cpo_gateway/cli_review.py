"""`cpo-gateway sessions review|release|correct`: CDRs held as implausible (see
bridge/cdr.review), listed, released as they are or corrected and released (bridge/held.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cpo_gateway.cli import EXIT_OK, EXIT_USAGE, _with_store
from cpo_gateway.config import Config
from cpo_gateway.store import Store

REVIEW_COMMANDS = ("review", "release", "correct")


def add_review_parsers(
    sss: argparse._SubParsersAction[argparse.ArgumentParser],
    leaf: Callable[..., argparse.ArgumentParser],
) -> None:
    """`sessions review|release|correct`: CDRs held as implausible (see bridge/cdr.review)."""
    leaf(sss, "review", help="list sessions whose CDR is held for review, with the reason")
    rel = leaf(sss, "release", help="queue a held CDR as it is")
    rel.add_argument("session_id")
    cor = leaf(sss, "correct", help="correct a held CDR's energy (and stop time) and queue it")
    cor.add_argument("session_id")
    cor.add_argument("--kwh", type=float, required=True, help="the energy to bill, in kWh")
    cor.add_argument("--stop", help="the session's stop time (ISO 8601; UTC if no offset)")


def cmd_sessions_review(args: argparse.Namespace) -> int:
    async def run(store: Store, cfg: Config, args: argparse.Namespace) -> int:
        if args.ss_cmd == "review":
            held = await store.list_sessions(10_000, "needs_review")
            for s in held:
                print(
                    f"{s.id}\t{s.evse_id or '-'}\t{s.emp or '(local)'}\ttx={s.transaction_id}\t"
                    f"{s.created_at}\t{s.detail or ''}"
                )
            print(f"{len(held)} session(s) need review")
            return EXIT_OK
        from cpo_gateway.app import offline_core

        correct = args.ss_cmd == "correct"
        released = await offline_core(cfg, store).release_held_cdr(
            args.session_id,
            kwh=args.kwh if correct else None,
            stop=args.stop if correct else None,
        )
        if not released.ok:
            print(f"{args.session_id}: {released.detail}", file=sys.stderr)
            return EXIT_USAGE if released.usage else 1
        print(f"{args.session_id}: {released.detail}")
        return EXIT_OK

    return _with_store(args, run)
