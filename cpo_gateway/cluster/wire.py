"""What nodes say to each other over NOTIFY: one JSON object per notification.

Every message has a type `t`:

- `call` (to one node's channel): `id` (the caller's call id), `from` (the caller's node),
  `kind` (what runs it: `control` or `admin`), `body` (an object: the command and its
  arguments), `wait_s` (how long the caller waits: a node does not start what nobody awaits);
- `reply` (to the caller's channel): `id`, `result` (an object);
- `here` (broadcast): `node`, `on` and `off` (charge point ids connected to it, gone from it);
- `auth` (broadcast): `node`, `push`: authorization state changed there, forget what was
  cached (`push`: a whole list changed, send the chargers theirs now);
- `ref` (either): `id`: the message is the body of row `id` of `cluster_messages` (a NOTIFY
  payload is at most 8,000 bytes).

A peer is another process of ours, but its messages are still read as outside input: a
message that is not one of these is refused with an error naming the field, and the listener
keeps listening.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

# Payloads above this go into a cluster_messages row (PostgreSQL's limit is 8,000 bytes).
INLINE_MAX = 7000
BROADCAST = "cpo_gw_all"
KINDS = frozenset({"control", "admin"})


class BadMessage(ValueError):
    """A notification that is not a message of ours; the text names the field."""


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    sender: str
    kind: str
    body: dict[str, Any]
    wait_s: float


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Here:
    node: str
    on: tuple[str, ...]
    off: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthChanged:
    node: str
    push: bool = False


@dataclass(frozen=True, slots=True)
class Ref:
    id: int


Message = Call | Reply | Here | AuthChanged | Ref


def channel_of(node_id: str) -> str:
    """A node's channel: a digest of its id, so any id is a valid identifier of < 64 bytes."""
    return "cpo_gw_" + hashlib.sha256(node_id.encode()).hexdigest()[:24]


def _text(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise BadMessage(f"{key}: expected a non-empty string, got {value!r:.40}")
    return value


def _ids(d: dict[str, Any], key: str) -> tuple[str, ...]:
    value = d.get(key, [])
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise BadMessage(f"{key}: expected a list of charge point ids")
    return tuple(value)


def _object(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key)
    if not isinstance(value, dict):
        raise BadMessage(f"{key}: expected an object, got {type(value).__name__}")
    return value


def parse(payload: str | bytes) -> Message:
    """One notification's payload as a message, or BadMessage."""
    try:
        d = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"payload: not JSON ({exc})") from None
    if not isinstance(d, dict):
        raise BadMessage("payload: expected a JSON object")
    t = d.get("t")
    if t == "call":
        kind = _text(d, "kind")
        if kind not in KINDS:
            raise BadMessage(f"kind: expected one of {', '.join(sorted(KINDS))}, got {kind!r}")
        wait = d.get("wait_s")
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait <= 3600:
            raise BadMessage(f"wait_s: expected seconds in (0, 3600], got {wait!r:.40}")
        return Call(_text(d, "id"), _text(d, "from"), kind, _object(d, "body"), float(wait))
    if t == "reply":
        return Reply(_text(d, "id"), _object(d, "result"))
    if t == "here":
        return Here(_text(d, "node"), _ids(d, "on"), _ids(d, "off"))
    if t == "auth":
        return AuthChanged(_text(d, "node"), d.get("push") is True)
    if t == "ref":
        ref = d.get("id")
        if isinstance(ref, bool) or not isinstance(ref, int) or ref <= 0:
            raise BadMessage(f"id: expected a positive integer, got {ref!r:.40}")
        return Ref(ref)
    raise BadMessage(f"t: expected one of call, reply, here, auth, ref, got {t!r:.40}")


def render(message: Message) -> str:
    if isinstance(message, Call):
        d: dict[str, Any] = {
            "t": "call",
            "id": message.id,
            "from": message.sender,
            "kind": message.kind,
            "body": message.body,
            "wait_s": message.wait_s,
        }
    elif isinstance(message, Reply):
        d = {"t": "reply", "id": message.id, "result": message.result}
    elif isinstance(message, Here):
        d = {"t": "here", "node": message.node, "on": message.on, "off": message.off}
    elif isinstance(message, AuthChanged):
        d = {"t": "auth", "node": message.node, "push": message.push}
    else:
        d = {"t": "ref", "id": message.id}
    return orjson.dumps(d).decode()
