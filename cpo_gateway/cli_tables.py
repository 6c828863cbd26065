"""Tables for the operator's commands: aligned columns under a header line for people, or
`--tsv` (the same header and columns, tab-separated, no padding) for scripts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cpo_gateway.bridge.clock import rfc3339, to_epoch
from cpo_gateway.store.reports import SessionRow

NONE = "-"  # an empty cell: every cell has a value, so columns split on blanks too


def add_tsv(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tsv", action="store_true", help="tab-separated values with a header line, for scripts"
    )


def cell(value: object) -> str:
    """One cell: no tabs or line breaks inside, `-` for nothing."""
    if value is None or value == "":
        return NONE
    return " ".join(str(value).split())


def when(epoch: float | None) -> str:
    return NONE if epoch is None else rfc3339(epoch)


def duration(seconds: float | None) -> str:
    """1:02:03 (hours:minutes:seconds); `-` when unknown."""
    if seconds is None or seconds < 0:
        return NONE
    total = round(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], *, tsv: bool) -> str:
    table = [list(headers), *[[cell(v) for v in row] for row in rows]]
    if tsv:
        return "\n".join("\t".join(line) for line in table)
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table
    )


SESSION_HEADERS = (
    "session",
    "state",
    "origin",
    "evse_id",
    "emp",
    "tx",
    "auth",
    "start",
    "stop",
    "duration",
    "kwh",
)


def session_table(rows: Sequence[SessionRow], *, tsv: bool) -> str:
    """`sessions list`: start is the transaction's (else when the session was created), the
    energy is the meter's, at the stop or at the last reading of a running session."""
    lines: list[list[object]] = []
    for s in rows:
        start = s.started_at or s.created_at
        begun, ended = to_epoch(start), to_epoch(s.stopped_at)
        lines.append(
            [
                s.id,
                s.state,
                s.origin,
                s.evse_id,
                s.emp or "(local)",
                s.transaction_id,
                s.auth_path,
                start,
                s.stopped_at,
                duration(ended - begun if begun is not None and ended is not None else None),
                None if s.energy_wh is None else f"{s.energy_wh / 1000:.3f}",
            ]
        )
    return render(SESSION_HEADERS, lines, tsv=tsv)
