"""The crash scenario's cluster: `nodes` gateway processes on one throwaway PostgreSQL, behind
one HAProxy rendered from config/haproxy.example.cfg for loopback ports. Chargers and the
EMP's requests go through HAProxy; `crash()` kills one node at a time with SIGKILL and starts
it again on the same ports, so its chargers reconnect to the others meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from types import TracebackType

import psycopg

from cpo_gateway.bench.haproxy import Haproxy, Node, Timing
from cpo_gateway.bench.pg_server import PgServer
from cpo_gateway.bench.soak.gateway import GatewayProcess, free_port, write_config
from cpo_gateway.config_storage import STORAGE_URL_ENV

# A dead node is out of HAProxy's rotation within about 1 s; a restarted one back after 0.5 s.
TIMING = Timing(inter_ms=500, fall=2, rise=1)
START_TIMEOUT_S = 90.0  # a node's start on a busy machine: interpreter, migrations check, jobs


async def pg_outbox_left(url: str) -> int:
    """Outbox rows of the database at `url` not delivered (pending or dead-lettered)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT count(*) FROM outbox WHERE state <> 'delivered'")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


class ClusterTarget:
    """`async with ClusterTarget(...) as cluster`: everything started, stopped at exit."""

    def __init__(self, workdir: Path, emp_url: str, chargers: int, nodes: int) -> None:
        self._workdir = workdir
        self._emp_url = emp_url
        self._chargers = chargers
        self._count = nodes
        self._pg = PgServer()
        self._nodes: list[GatewayProcess] = []
        self._proxy: Haproxy | None = None
        self.url = ""

    async def __aenter__(self) -> ClusterTarget:
        await asyncio.to_thread(self._pg.start)
        try:
            self.url = await asyncio.to_thread(self._pg.create_database)
            for k in range(1, self._count + 1):
                self._nodes.append(self._node(k))
            first, *others = self._nodes  # the first applies the migrations
            await first.start(timeout_s=START_TIMEOUT_S)
            await asyncio.gather(*(n.start(timeout_s=START_TIMEOUT_S) for n in others))
            members = [
                Node(f"node{k}", n.ocpp_port, n.oioi_port, n.oioi_port)
                for k, n in enumerate(self._nodes, 1)
            ]
            self._proxy = Haproxy(members, self._workdir / "haproxy", TIMING)
            await asyncio.to_thread(self._proxy.start)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    def _node(self, k: int) -> GatewayProcess:
        directory = self._workdir / f"node{k}"
        ocpp_port, oioi_port = free_port(), free_port()
        config = write_config(
            directory,
            emp_url=self._emp_url,
            chargers=self._chargers,
            ocpp_port=ocpp_port,
            oioi_port=oioi_port,
        )
        url_file = directory / "storage-url"
        url_file.touch(mode=0o600)
        url_file.write_text(self.url + "\n", encoding="utf-8")
        with config.open("a", encoding="utf-8") as f:
            f.write(
                f'\n[storage]\nurl_file = "{url_file}"\n\n'
                f'[cluster]\nnode_id = "node{k}"\nheartbeat_s = 0.5\nalive_s = 3.0\n'
            )
        # The config's url_file, never a storage URL in the caller's environment.
        env = {k: v for k, v in os.environ.items() if k != STORAGE_URL_ENV}
        return GatewayProcess(config, ocpp_port, oioi_port, directory / "gateway.log", env)

    @property
    def _haproxy(self) -> Haproxy:
        if self._proxy is None:
            raise RuntimeError("the cluster is not started")
        return self._proxy

    @property
    def charger_url(self) -> str:
        return self._haproxy.url("chargers", "/ocpp")

    @property
    def oioi_url(self) -> str:
        return self._haproxy.url("oioi", "/api/v4/request")

    @property
    def kills(self) -> int:
        return sum(n.kills for n in self._nodes)

    async def crash(self, rng: random.Random) -> None:
        node = rng.choice(self._nodes)
        await node.kill()
        await asyncio.sleep(rng.uniform(0, 1.0))
        await node.start(timeout_s=START_TIMEOUT_S)

    async def ensure_running(self) -> None:
        for node in self._nodes:
            if not node.running:
                await node.start(timeout_s=START_TIMEOUT_S)

    async def outbox_left(self) -> int:
        return await pg_outbox_left(self.url)

    async def terminate(self) -> int:
        async def one(node: GatewayProcess) -> int:
            return await node.terminate() if node.running else -9

        codes = await asyncio.gather(*(one(n) for n in self._nodes))
        return next((c for c in codes if c != 0), 0)

    async def _close(self) -> None:
        if self._proxy is not None:
            await asyncio.to_thread(self._proxy.stop)
        await asyncio.gather(*(n.terminate() for n in self._nodes if n.running))
        await asyncio.to_thread(self._pg.destroy)
