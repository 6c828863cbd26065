"""Known firmware quirks, normalised before a charger's payload meets the OCA schema.

Chargers in the field send payloads the schemas refuse for reasons that change nothing of
what they mean, and a charger that gets a CallError keeps retrying or blocks the card. So,
walking the payload along its own schema, these are mended before the check (and the mended
payload is what the parsers read):

- an optional member sent as null counts as absent (it is dropped);
- a member the schema does not know is dropped (vendors add their own; fields.py ignored
  them before the schemas were used, and still would);
- an integer sent as a float without a fraction (12.0) becomes the integer;
- a number where the schema wants a string (a sampled value 1500 instead of "1500", an idTag
  of digits) becomes its decimal string; DataTransfer's data sent as JSON (an object or an
  array) becomes its JSON text, as the schema's string;
- an enum value in another case or spelling (unit "kwh", status "charging", "EV_Disconnected")
  or with a typo (status "Chargin", reason "EVDisconected", errorCode "OtherErorr": one edit
  or so, see _close) becomes the schema's value;
- over-long vendor text (a serial of 40 characters, a model name) is cut to the schema's
  maximum; an idTag never is (a cut token is another card: it is refused, or dropped from a
  StopTransaction by its parser);
- a date-time without an offset ("2024-05-01T10:15:00", a charger clock in UTC by
  convention: the core reads it so) gets "Z".

Anything else the schema refuses is refused. The walk copies only the objects it changes:
a conforming payload comes back as the same object.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any

import orjson

_NEVER_CUT = frozenset({"idTag", "parentIdTag", "csr", "certificate", "data"})
_NAIVE_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\Z")
_SIMILAR = 0.85  # difflib ratio: "Chargin" / "Charging" is 0.93, "Faulted" / "Finishing" 0.38


def normalise(schema: dict[str, Any], payload: object) -> object:
    """`payload` with the quirks above mended; the same object when there was nothing to mend."""
    return _walk(schema, schema, payload, "")


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return dict(target)
    return node


def _walk(root: dict[str, Any], node: dict[str, Any], value: object, name: str) -> object:
    node = _resolve(root, node)
    kind = node.get("type")
    if kind == "object":
        return _object(root, node, value) if isinstance(value, dict) else value
    if kind == "array":
        items = node.get("items")
        if not isinstance(value, list) or not isinstance(items, dict):
            return value
        out: list[object] | None = None
        for i, item in enumerate(value):
            mended = _walk(root, items, item, name)
            if mended is not item:
                if out is None:
                    out = list(value)
                out[i] = mended
        return value if out is None else out
    if kind == "integer":
        return int(value) if type(value) is float and value.is_integer() else value
    if kind == "string":
        return _string(node, value, name)
    return value


def _object(root: dict[str, Any], node: dict[str, Any], value: dict[str, object]) -> object:
    properties: dict[str, Any] = node.get("properties", {})
    closed = node.get("additionalProperties") is False
    out: dict[str, object] | None = None
    for key, member in value.items():
        prop = properties.get(key)
        if member is None or (prop is None and closed):
            if out is None:
                out = dict(value)
            del out[key]
            continue
        if prop is None:
            continue
        mended = _walk(root, prop, member, key)
        if mended is not member:
            if out is None:
                out = dict(value)
            out[key] = mended
    return value if out is None else out


def _string(node: dict[str, Any], value: object, name: str) -> object:
    if type(value) is int or type(value) is float:
        value = repr(value) if type(value) is float else str(value)
    elif name == "data" and isinstance(value, dict | list):
        value = orjson.dumps(value).decode()
    if not isinstance(value, str):
        return value
    enum = node.get("enum")
    if enum is not None:
        return value if value in enum else _canonical(tuple(enum), value)
    limit = node.get("maxLength")
    if type(limit) is int and len(value) > limit and name not in _NEVER_CUT:
        return value[:limit]
    if node.get("format") == "date-time" and _NAIVE_DATE_TIME.match(value):
        return value + "Z"
    return value


def _fold(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


@functools.lru_cache(maxsize=4096)
def _canonical(enum: tuple[str, ...], value: str) -> str:
    """The enum value `value` stands for, or `value` itself when none is close enough (the
    schema then refuses it). Cached: a charger with a quirk repeats it in every message."""
    folded = _fold(value)
    for candidate in enum:
        if _fold(candidate) == folded:
            return candidate
    if len(value) > 64:
        return value
    close = difflib.get_close_matches(value, enum, n=2, cutoff=_SIMILAR)
    # Two candidates as close as each other: guessing would make up a status.
    if len(close) == 1 or (
        len(close) == 2
        and difflib.SequenceMatcher(None, value, close[0]).ratio()
        > difflib.SequenceMatcher(None, value, close[1]).ratio()
    ):
        return close[0]
    return value
