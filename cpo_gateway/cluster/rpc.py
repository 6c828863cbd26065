"""Calls from one node to another over the bus, each answered on the caller's channel.

A call carries an id; the caller waits for the reply with that id at most `wait_s` (the
command's own deadline), and an answer that comes later is dropped. The callee runs the call
in a tracked task (a charger command may take its whole timeout) and replies with its
result; a call whose kind it does not serve, or whose body it cannot read, is answered with
an error result naming the field, never left unanswered.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import psycopg

from cpo_gateway import logs
from cpo_gateway.cluster import wire

log = logs.get(__name__)
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class CallRefused(ValueError):
    """A call's body that the callee cannot carry out; the text names the field."""


class Calls:
    def __init__(
        self,
        node_id: str,
        send: Callable[[str, wire.Message], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
    ) -> None:
        self.node_id = node_id
        self._send = send
        self._handlers: dict[str, Handler] = {}
        self._spawn = spawn
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.made = 0
        self.served = 0
        self.timed_out = 0

    def serve_with(self, kind: str, handler: Handler) -> None:
        """Calls of `kind` that arrive are carried out by `handler`."""
        self._handlers[kind] = handler

    async def call(
        self, node_id: str, kind: str, body: dict[str, Any], wait_s: float
    ) -> dict[str, Any] | None:
        """The callee's result, or None when none came within `wait_s` (or the bus could
        not carry the call)."""
        call_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        self.made += 1
        try:
            async with asyncio.timeout(wait_s):
                await self._send(node_id, wire.Call(call_id, self.node_id, kind, body, wait_s))
                return await future
        except (TimeoutError, psycopg.Error) as exc:
            self.timed_out += 1
            log.warning(
                "cluster.call_unanswered",
                node=node_id,
                kind=kind,
                wait_s=wait_s,
                error=type(exc).__name__,
            )
            return None
        finally:
            self._waiting.pop(call_id, None)

    def answered(self, reply: wire.Reply) -> None:
        future = self._waiting.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply.result)

    def arrived(self, call: wire.Call) -> None:
        self._spawn(self._serve(call), f"cluster-call-{call.kind}")

    async def _serve(self, call: wire.Call) -> None:
        handler = self._handlers.get(call.kind)
        try:
            if handler is None:
                raise CallRefused(f"kind: this node serves no {call.kind!r} calls")
            async with asyncio.timeout(call.wait_s):
                result = await handler(call.body)
        except CallRefused as exc:
            result = {"status": "error", "detail": str(exc), "data": {}}
        except TimeoutError:
            return  # the caller has stopped waiting
        except Exception as exc:  # the caller gets an answer whatever broke here
            log.exception("cluster.call_failed", node=call.sender, kind=call.kind)
            detail = f"failed on node {self.node_id}: {exc}"
            result = {"status": "error", "detail": detail, "data": {}}
        self.served += 1
        try:
            await self._send(call.sender, wire.Reply(call.id, result))
        except psycopg.Error as exc:
            log.warning("cluster.reply_lost", node=call.sender, error=str(exc))
