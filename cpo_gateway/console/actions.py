"""The console's actions: each reads its form fields, calls the port and is audited.

One table, one audit event per action (`audit.<action>`, with the operator, the targets and
the result), so a new action cannot forget its audit line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from cpo_gateway.console.port import ActionResult, ConsoleOps

Form = Mapping[str, str]


class FormError(ValueError):
    """A field missing or malformed; the message names it."""


def _text(form: Form, name: str, most: int = 200) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise FormError(f"{name}: required")
    if len(value) > most:
        raise FormError(f"{name}: at most {most} characters")
    return value


def _int(form: Form, name: str, lo: int = 0, hi: int = 1_000_000_000) -> int:
    raw = _text(form, name, 12)
    try:
        value = int(raw)
    except ValueError:
        raise FormError(f"{name}: expected a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise FormError(f"{name}: expected {lo}..{hi}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Action:
    event: str  # the audit event name, a constant
    targets: tuple[str, ...]  # the form fields logged as the action's targets
    run: Callable[[ConsoleOps, Form], Awaitable[ActionResult]]


ACTIONS: dict[str, Action] = {
    "remote_stop": Action(
        "audit.remote_stop", ("session_id",),
        lambda ops, f: ops.remote_stop(_text(f, "session_id")),
    ),
    "unlock": Action(
        "audit.unlock", ("charge_point", "connector"),
        lambda ops, f: ops.unlock(_text(f, "charge_point"), _int(f, "connector", 1, 100)),
    ),
    "reset": Action(
        "audit.reset", ("charge_point", "type"),
        lambda ops, f: ops.reset(_text(f, "charge_point"), _text(f, "type")),
    ),
    "change_availability": Action(
        "audit.change_availability", ("charge_point", "connector", "type"),
        lambda ops, f: ops.change_availability(
            _text(f, "charge_point"), _int(f, "connector", 0, 100), _text(f, "type")
        ),
    ),
    "trigger_status": Action(
        "audit.trigger_status", ("charge_point",),
        lambda ops, f: ops.trigger_status(_text(f, "charge_point")),
    ),
    "push_local_list": Action(
        "audit.push_local_list", ("charge_point",),
        lambda ops, f: ops.push_local_list(_text(f, "charge_point")),
    ),
    "close_session": Action(
        "audit.close_session", ("session_id", "reason"),
        lambda ops, f: ops.close_session(_text(f, "session_id"), _text(f, "reason")),
    ),
    "release_cdr": Action(
        "audit.release_cdr", ("session_id",),
        lambda ops, f: ops.release_cdr(_text(f, "session_id")),
    ),
    "outbox_retry": Action(
        "audit.outbox_retry", ("row_id",),
        lambda ops, f: ops.outbox_retry(_int(f, "row_id", 1)),
    ),
    "outbox_retry_pending": Action(
        "audit.outbox_retry_pending", (),
        lambda ops, f: ops.outbox_retry_pending(),
    ),
    "outbox_purge": Action(
        "audit.outbox_purge", ("row_id",),
        lambda ops, f: ops.outbox_purge(_int(f, "row_id", 1)),
    ),
}  # fmt: skip
