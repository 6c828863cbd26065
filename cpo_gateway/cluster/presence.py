"""Which nodes are alive and which node holds which charger.

`cluster_nodes` has a row per node, its `seen_at` beaten every few seconds on the sender
connection; a peer seen within `alive_s` is alive. `charger_nodes` has a row per connected
charger: the newest connection wins (an upsert), and a disconnect removes the row only while
it is still this connection's (same node, same epoch), so a takeover on another node is never
undone by the old node's late disconnect. Each change is also broadcast (`here`), so the
other nodes know within a notification where a charger is; they read the whole table again
every `RELOAD_S` and after any reconnect, which mends a notification missed while away.

When the sender connection comes back after an outage this node asserts again what it holds
(and drops rows of its own it no longer holds): what changed while PostgreSQL was away is
not lost, only late.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import psycopg
from psycopg import sql

from cpo_gateway import logs
from cpo_gateway.cluster import wire

log = logs.get(__name__)
RELOAD_S = 15.0  # the whole charger_nodes table, read again at most this often
MESSAGES_KEPT_S = 300  # large message bodies older than this are pruned
Conn = psycopg.AsyncConnection[Any]

_UPSERT = """
INSERT INTO charger_nodes (charge_point_id, node_id, connected_at, epoch)
VALUES (%s, %s, now(), %s)
ON CONFLICT (charge_point_id) DO UPDATE
SET node_id = excluded.node_id, connected_at = excluded.connected_at, epoch = excluded.epoch
"""
_CLEAR = "DELETE FROM charger_nodes WHERE charge_point_id = %s AND node_id = %s AND epoch = %s"


def _chunks(ids: list[str], budget: int = wire.INLINE_MAX - 200) -> Iterable[list[str]]:
    """Charge point ids in lists whose rendering stays within one NOTIFY."""
    chunk: list[str] = []
    size = 0
    for cp in ids:
        cost = len(cp.encode()) + 4
        if chunk and size + cost > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(cp)
        size += cost
    if chunk:
        yield chunk


class Presence:
    def __init__(
        self,
        node_id: str,
        *,
        alive_s: float,
        run: Callable[[Callable[[Conn], Awaitable[None]]], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
    ) -> None:
        """`run`: runs an operation on the bus's sender connection."""
        self.node_id = node_id
        self._alive_s = alive_s
        self._run = run
        self._spawn = spawn
        self._mine: dict[str, int] = {}  # charge point -> epoch of its connection here
        self._dirty: dict[str, tuple[int, bool]] = {}  # -> (epoch, connected)
        self._where: dict[str, str] = {}  # charge point -> the other node holding it
        self.peers: dict[str, float] = {}  # alive peer -> seconds since it was seen
        self._reloaded = 0.0
        self._started = False
        self.beaten_at = 0.0  # monotonic: the last heartbeat that reached the database
        self.takeovers_seen = 0
        self.flushed = 0  # changes of this node's chargers written to the database

    # --- this node's chargers ------------------------------------------------------------------
    def connected(self, charge_point_id: str) -> None:
        epoch = time.time_ns()
        self._mine[charge_point_id] = epoch
        self._changed(charge_point_id, epoch, True)

    def disconnected(self, charge_point_id: str) -> None:
        epoch = self._mine.pop(charge_point_id, None)
        if epoch is not None:
            self._changed(charge_point_id, epoch, False)

    def _changed(self, cp: str, epoch: int, connected: bool) -> None:
        first = not self._dirty
        self._dirty[cp] = (epoch, connected)
        if first:  # one flush at a time carries every change made before it runs
            self._spawn(self._flush_soon(), "cluster-presence")

    async def _flush_soon(self) -> None:
        # On failure the sender is reconnecting: on_connect asserts everything again.
        with contextlib.suppress(psycopg.Error):
            await self._run(self._flush)

    async def _flush(self, conn: Conn) -> None:
        batch, self._dirty = self._dirty, {}
        if not batch:
            return
        on = [(cp, self.node_id, e) for cp, (e, up) in batch.items() if up]
        off = [(cp, self.node_id, e) for cp, (e, up) in batch.items() if not up]
        async with conn.cursor() as cur:
            if on:
                await cur.executemany(_UPSERT, on)
            if off:
                await cur.executemany(_CLEAR, off)
        await self._announce(conn, [x[0] for x in on], [x[0] for x in off])
        self.flushed += len(batch)

    async def _announce(self, conn: Conn, on: list[str], off: list[str]) -> None:
        for ids, up in ((on, True), (off, False)):
            for chunk in _chunks(ids):
                here = wire.Here(
                    self.node_id, tuple(chunk) if up else (), () if up else tuple(chunk)
                )
                await conn.execute("SELECT pg_notify(%s, %s)", (wire.BROADCAST, wire.render(here)))

    # --- the sender connection's hooks ---------------------------------------------------------
    async def on_connect(self, conn: Conn) -> None:
        """A new sender connection: this node is alive, and holds exactly what it holds."""
        self._dirty = {}
        mine = dict(self._mine)
        # started_at: this process's first connection; later ones only say it is alive.
        keep = "cluster_nodes.started_at" if self._started else "now()"
        upsert = sql.SQL(
            "INSERT INTO cluster_nodes (node_id, started_at, seen_at) VALUES (%s, now(), now())"
            " ON CONFLICT (node_id) DO UPDATE SET seen_at = now(), started_at = {}"
        ).format(sql.SQL(keep))
        await conn.execute(upsert, (self.node_id,))
        self._started = True
        await conn.execute(
            "DELETE FROM charger_nodes WHERE node_id = %s AND NOT (charge_point_id = ANY(%s))",
            (self.node_id, list(mine)),
        )
        async with conn.cursor() as cur:
            if mine:
                await cur.executemany(_UPSERT, [(cp, self.node_id, e) for cp, e in mine.items()])
        await self._announce(conn, list(mine), [])
        self.beaten_at = time.monotonic()
        await self._reload(conn)

    async def beat(self, conn: Conn) -> None:
        await conn.execute(
            "UPDATE cluster_nodes SET seen_at = now() WHERE node_id = %s", (self.node_id,)
        )
        self.beaten_at = time.monotonic()
        await self._flush(conn)
        cur = await conn.execute(
            "SELECT node_id, extract(epoch FROM now() - seen_at)::float8 FROM cluster_nodes"
            " WHERE node_id <> %s AND seen_at > now() - make_interval(secs => %s)",
            (self.node_id, self._alive_s),
        )
        self.peers = {str(n): float(age) for n, age in await cur.fetchall()}
        if time.monotonic() - self._reloaded >= RELOAD_S:
            await self._reload(conn)
            await conn.execute(
                "DELETE FROM cluster_messages WHERE created_at < now() - make_interval(secs => %s)",
                (MESSAGES_KEPT_S,),
            )

    def missed_some(self) -> None:
        """Notifications may have been missed: read the whole table at the next beat."""
        self._reloaded = 0.0

    async def _reload(self, conn: Conn) -> None:
        cur = await conn.execute(
            "SELECT charge_point_id, node_id FROM charger_nodes WHERE node_id <> %s",
            (self.node_id,),
        )
        self._where = {str(cp): str(node) for cp, node in await cur.fetchall()}
        self._reloaded = time.monotonic()

    # --- what the other nodes say --------------------------------------------------------------
    def heard(self, here: wire.Here) -> None:
        if here.node == self.node_id:
            return
        self.peers.setdefault(here.node, 0.0)  # it speaks: alive, before our next beat says so
        for cp in here.on:
            if cp in self._mine:
                self.takeovers_seen += 1  # ours until our socket closes; theirs is newer
            self._where[cp] = here.node
        for cp in here.off:
            if self._where.get(cp) == here.node:
                del self._where[cp]

    def node_of(self, charge_point_id: str) -> str | None:
        """The alive node, other than this one, holding the charger; None when no node is
        known to (it is here, or nowhere)."""
        node = self._where.get(charge_point_id)
        return node if node is not None and node in self.peers else None

    def holds(self, charge_point_id: str) -> bool:
        return charge_point_id in self._mine

    @property
    def chargers_elsewhere(self) -> int:
        return sum(1 for node in self._where.values() if node in self.peers)
