"""One node of a cluster: its bus, its presence, its calls, its leases, wired together.

Three connections to PostgreSQL, each a supervised service that reconnects with back-off:
the bus's listener and sender (bus.py) and the leases' own (leases.py). The node watches the
core for what the other nodes must learn (chargers connecting and leaving, authorization
changes) and tells it what they said.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from cpo_gateway import logs
from cpo_gateway.bridge.core_ports import ClusterSide
from cpo_gateway.cluster import wire
from cpo_gateway.cluster.bus import Bus
from cpo_gateway.cluster.control import AdminExecutor, AdminRoute, ClusterControl, LocalChargers
from cpo_gateway.cluster.leases import Leases
from cpo_gateway.cluster.presence import Presence
from cpo_gateway.cluster.rpc import Calls
from cpo_gateway.tasks import TaskSet

log = logs.get(__name__)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """The [cluster] table as the node uses it (config_cluster.py reads it)."""

    url: str
    node_id: str
    beat_s: float = 2.0
    alive_s: float = 10.0
    lease_retry_s: float = 3.0


class ClusterNode:
    def __init__(
        self,
        settings: NodeSettings,
        local: LocalChargers,
        tasks: TaskSet,
        *,
        admin: AdminExecutor,
        call_timeout_s: float,
        lease_jobs: Iterable[str],
    ) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self._core: ClusterSide | None = None  # until serve(): the core is built after us
        self._tasks = tasks
        self._services: list[asyncio.Task[Any]] = []
        self._auth_queued: bool | None = None  # an `auth` broadcast on its way (push flag)
        self.authorization_changes_heard = 0  # from other nodes

        def spawn(coro: Any, name: str) -> object:
            return tasks.spawn(coro, name=name)

        self.bus = Bus(
            settings.url,
            settings.node_id,
            on_message=self._message,
            on_connect=self._on_connect,
            every=self._beat,
            every_s=settings.beat_s,
            spawn=spawn,
            on_listen=lambda: self.presence.missed_some(),
        )
        self.presence = Presence(
            settings.node_id, alive_s=settings.alive_s, run=self.bus.run, spawn=spawn
        )
        self.calls = Calls(settings.node_id, self.bus.send, spawn)
        self.control = ClusterControl(
            local,
            self.presence,
            self.calls,
            call_timeout_s=call_timeout_s,
            before_start=self._relearn_pending_starts,
        )
        self.admin = AdminRoute(admin, self.control, self.calls, call_timeout_s=call_timeout_s)
        self.calls.serve_with("control", self.control.serve)
        self.calls.serve_with("admin", self.admin.serve)
        self.leases = Leases(
            settings.url, settings.node_id, lease_jobs, retry_s=settings.lease_retry_s
        )

    def serve(self, core: ClusterSide) -> None:
        """Watch the core for what the other nodes must learn, and tell it what they say
        (the core is built with this node's `control` as its ChargerControl)."""
        self._core = core
        core.watch(self._presence_changed, self._authorization_changed)

    async def _relearn_pending_starts(self) -> None:
        if self._core is not None:
            await self._core.relearn_pending_starts()

    def start(self) -> None:
        self._services = [
            self._tasks.service(self.bus.listen_forever(), name="cluster-listener"),
            self._tasks.service(self.bus.send_forever(), name="cluster-sender"),
            self._tasks.service(self.leases.keep(), name="cluster-leases"),
        ]

    async def close(self, grace_s: float = 1.0) -> None:
        """Leave the cluster: tell it this node holds nothing (best effort, within
        `grace_s`), then close the connections (the leases go with theirs)."""

        async def leave(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute("DELETE FROM charger_nodes WHERE node_id = %s", (self.node_id,))
            await conn.execute("DELETE FROM cluster_nodes WHERE node_id = %s", (self.node_id,))

        if self.bus.sending:
            try:
                async with asyncio.timeout(grace_s):
                    await self.bus.run(leave)
            except (TimeoutError, psycopg.Error) as exc:
                log.warning("cluster.leave_failed", node=self.node_id, error=repr(exc))
        for task in self._services:
            self._tasks.retire(task)
        self.bus.abandon()
        await asyncio.gather(*self._services, return_exceptions=True)
        self._services = []

    def holds(self, job: str) -> bool:
        """Whether this node holds the lease of a once-per-cluster job."""
        return self.leases.holds(job)

    # --- the bus -------------------------------------------------------------------------------
    async def _on_connect(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await self.presence.on_connect(conn)

    async def _beat(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await self.presence.beat(conn)

    def _message(self, message: wire.Message) -> None:
        if isinstance(message, wire.Call):
            self.calls.arrived(message)
        elif isinstance(message, wire.Reply):
            self.calls.answered(message)
        elif isinstance(message, wire.Here):
            self.presence.heard(message)
        elif isinstance(message, wire.AuthChanged) and message.node != self.node_id:
            self.authorization_changes_heard += 1
            if self._core is not None:
                self._core.authorization_changed_elsewhere(message.push)
            log.info("cluster.authorization_changed", by=message.node, push=message.push)

    # --- the core ------------------------------------------------------------------------------
    def _presence_changed(self, charge_point_id: str, connected: bool) -> None:
        if connected:
            self.presence.connected(charge_point_id)
        else:
            self.presence.disconnected(charge_point_id)

    def _authorization_changed(self, whole_list: bool) -> None:
        """After a committed change here: one broadcast carries every change made before it
        goes out (a stream of token updates is not a stream of NOTIFYs)."""
        if self._auth_queued is not None:
            self._auth_queued = self._auth_queued or whole_list
            return
        self._auth_queued = whole_list
        self._tasks.spawn(self._announce_authorization(), name="cluster-auth")

    async def _announce_authorization(self) -> None:
        await asyncio.sleep(0)  # changes made in this turn of the loop go in the same one
        push, self._auth_queued = bool(self._auth_queued), None
        try:
            await self.bus.send(None, wire.AuthChanged(self.node_id, push))
        except psycopg.Error as exc:
            # The other nodes' caches expire by their TTL; their lists by the local-list job.
            log.warning("cluster.authorization_not_told", node=self.node_id, error=str(exc))

    # --- /healthz and /metrics -----------------------------------------------------------------
    def health(self) -> dict[str, object]:
        return {
            "node": self.node_id,
            "db": "up" if self.bus.up else "unreachable",
            "peers": sorted(self.presence.peers),
            "leases": self.leases.held,
            "chargers_elsewhere": self.presence.chargers_elsewhere,
        }
