"""The bus between nodes: PostgreSQL LISTEN/NOTIFY on two autocommit connections.

The *listener* connection LISTENs on the node's own channel and on the broadcast channel
and only ever waits for notifications (psycopg runs one thing at a time per connection). The
*sender* connection does everything else, one operation at a time in the order asked: the
NOTIFYs, the presence writes, the heartbeat, fetching a large message's body. Both are
long-lived services of the gateway's TaskSet: each opens its connection again with back-off
(0.2 s doubling to 5 s) when PostgreSQL goes away, and says so in the log once per outage.
While the sender is away, operations wait for it; their callers have deadlines of their own.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from cpo_gateway import logs
from cpo_gateway.cluster import wire

log = logs.get(__name__)
T = TypeVar("T")
Op = Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]]
BACKOFF_FIRST_S = 0.2
BACKOFF_MOST_S = 5.0


async def connect(dsn: str, role: str, node_id: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection named after the node and its role (pg_stat_activity shows
    it); TCP keepalives so a peer that vanishes without a FIN is noticed in seconds."""
    return await psycopg.AsyncConnection.connect(
        dsn,
        autocommit=True,
        application_name=f"cpo-gateway {node_id} {role}"[:63],
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
    )


class Backoff:
    """Seconds to wait before the next attempt to reconnect."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = BACKOFF_FIRST_S

    def reset(self) -> None:
        self._next = BACKOFF_FIRST_S

    def next(self) -> float:
        wait, self._next = self._next, min(self._next * 2, BACKOFF_MOST_S)
        return wait


class Bus:
    """Messages to one node or to all, and the sender connection's queue of operations."""

    def __init__(
        self,
        dsn: str,
        node_id: str,
        *,
        on_message: Callable[[wire.Message], None],
        on_connect: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
        every: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
        every_s: float,
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
        on_listen: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_message`: each message that arrives (a large one after its body was fetched).
        `on_connect`: run first on every new sender connection (re-assert what this node
        holds). `every`: run on the sender connection every `every_s` (the heartbeat).
        `on_listen`: after every new listener connection (what was said while it was away
        is lost: read the state again)."""
        self._dsn = dsn
        self.node_id = node_id
        self.channel = wire.channel_of(node_id)
        self._on_message = on_message
        self._on_connect = on_connect
        self._every = every
        self._every_s = every_s
        self._spawn = spawn
        self._on_listen = on_listen
        self._ops: collections.deque[tuple[Op, asyncio.Future[Any]]] = collections.deque()
        self._wake = asyncio.Event()
        self.listening = False
        self.sending = False
        self.bad_messages = 0
        self.sent = 0
        self.received = 0

    @property
    def up(self) -> bool:
        return self.listening and self.sending

    async def run(self, op: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run `op` on the sender connection, after the operations asked before it."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append((op, future))
        self._wake.set()
        return await future

    async def send(self, node_id: str | None, message: wire.Message) -> None:
        """NOTIFY one node (None: every node, this one included); a body over INLINE_MAX
        bytes goes into a cluster_messages row and the notification carries its id."""
        channel = wire.BROADCAST if node_id is None else wire.channel_of(node_id)
        payload = wire.render(message)

        async def notify(conn: psycopg.AsyncConnection[Any]) -> None:
            body = payload
            if len(body.encode()) > wire.INLINE_MAX:
                cur = await conn.execute(
                    "INSERT INTO cluster_messages (body) VALUES (%s) RETURNING id", (body,)
                )
                row = await cur.fetchone()
                assert row is not None
                body = wire.render(wire.Ref(int(row[0])))
            await conn.execute("SELECT pg_notify(%s, %s)", (channel, body))
            self.sent += 1

        await self.run(notify)

    def abandon(self) -> None:
        """The node is closing: operations still queued fail (their callers stop waiting)."""
        while self._ops:
            _, future = self._ops.popleft()
            if not future.done():
                future.set_exception(psycopg.OperationalError("the cluster node is closing"))

    # --- the sender ----------------------------------------------------------------------------
    async def send_forever(self) -> None:
        backoff = Backoff()
        while True:
            try:
                async with await connect(self._dsn, "sender", self.node_id) as conn:
                    await self._on_connect(conn)
                    self.sending = True
                    backoff.reset()
                    log.info("cluster.sender_connected", node=self.node_id)
                    await self._serve(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if self.sending:
                    log.warning("cluster.sender_lost", node=self.node_id, error=str(exc))
                self.sending = False
                await asyncio.sleep(backoff.next())
            finally:
                self.sending = False

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        due = time.monotonic()
        while True:
            # The heartbeat comes first whenever it is due, busy or not: a node whose queue
            # never empties must not look dead to the others.
            if time.monotonic() >= due:
                await self._every(conn)
                due = time.monotonic() + self._every_s
            if self._ops:
                await self._one(conn)
                continue
            self._wake.clear()
            wait = max(0.0, due - time.monotonic())
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _one(self, conn: psycopg.AsyncConnection[Any]) -> None:
        op, future = self._ops.popleft()
        if future.done():  # its caller gave up
            return
        try:
            result = await op(conn)
        except psycopg.Error as exc:
            # Failed, not retried: a NOTIFY that may have gone out is never sent twice. A
            # broken connection is opened again by send_forever.
            if not future.done():
                future.set_exception(exc)
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                raise
            return
        if not future.done():
            future.set_result(result)

    # --- the listener --------------------------------------------------------------------------
    async def listen_forever(self) -> None:
        backoff = Backoff()
        while True:
            try:
                async with await connect(self._dsn, "listener", self.node_id) as conn:
                    for channel in (self.channel, wire.BROADCAST):
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.listening = True
                    self._on_listen()
                    backoff.reset()
                    log.info("cluster.listening", node=self.node_id, channel=self.channel)
                    async for note in conn.notifies():
                        self._arrived(note.payload)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if self.listening:
                    log.warning("cluster.listener_lost", node=self.node_id, error=str(exc))
                self.listening = False
                await asyncio.sleep(backoff.next())
            finally:
                self.listening = False

    def _arrived(self, payload: str) -> None:
        try:
            message = wire.parse(payload)
        except wire.BadMessage as exc:
            self.bad_messages += 1
            log.warning("cluster.bad_message", node=self.node_id, error=str(exc))
            return
        self.received += 1
        if isinstance(message, wire.Ref):
            self._spawn(self._fetch(message.id), "cluster-fetch")
        else:
            self._on_message(message)

    async def _fetch(self, ref: int) -> None:
        """A large message: its body is read on the sender connection, then handled like
        any other. Rows are left for the other readers of a broadcast and pruned by age
        (see the heartbeat)."""

        async def fetch(conn: psycopg.AsyncConnection[Any]) -> str | None:
            cur = await conn.execute("SELECT body FROM cluster_messages WHERE id = %s", (ref,))
            row = await cur.fetchone()
            return None if row is None else str(row[0])

        try:
            body = await self.run(fetch)
        except psycopg.Error as exc:  # the sender broke or the node is closing: it is lost
            log.warning("cluster.message_lost", node=self.node_id, ref=ref, error=str(exc))
            return
        if body is None:
            log.warning("cluster.message_missing", node=self.node_id, ref=ref)
            return
        self._arrived(body)
