"""The schema step both versions' handlers take before their parsers run.

A payload that meets its schema goes to the parser as sent. One the schema refuses is mended
of known firmware quirks (quirks.py) and checked again; still refused, it gets the CallError
of the problem, naming the field, unless it is a transaction message the parser can still
read: that one is answered and the problem logged, because a charger refused keeps resending
it and the energy it reports would be lost.
"""

from __future__ import annotations

from collections.abc import Callable

from cpo_gateway import logs
from cpo_gateway.csms import quirks
from cpo_gateway.csms.frames import PayloadError
from cpo_gateway.csms.schemas import SchemaProblem, SchemaSet

log = logs.get(__name__)
Parse = Callable[[str, dict[str, object]], object]


def checked(
    schemas: SchemaSet,
    charge_point_id: str,
    action: str,
    payload: dict[str, object],
    parse: Parse,
    *,
    transactional: frozenset[str],
    error: Callable[[str, SchemaProblem], PayloadError],
) -> object:
    """The parsed payload, once it has met its schema (module docstring)."""
    if action not in schemas.actions():
        return parse(charge_point_id, payload)
    problem = schemas.check_call(action, payload)
    if problem is None:  # nearly every payload: the quirks pass would change nothing
        return parse(charge_point_id, payload)
    mended = quirks.normalise(schemas.request_schema(action), payload)
    assert isinstance(mended, dict)  # an object's schema mends an object into an object
    problem = schemas.check_call(action, mended)
    if problem is None:
        return parse(charge_point_id, mended)
    parsed = parse(charge_point_id, mended)  # its own error, when it has one
    if action not in transactional:
        raise error(action, problem)
    log.warning(
        "ocpp.schema_tolerated",
        charge_point_id=charge_point_id,
        action=action,
        field=problem.field,
        problem=problem.message,
    )
    return parsed
