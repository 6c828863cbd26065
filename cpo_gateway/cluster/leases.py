"""Leases for the jobs that must run once per cluster: a session-level advisory lock per job.

`pg_try_advisory_lock` on a connection of its own: the lock is held while that connection
lives, so the lease of a node that dies (or whose connection PostgreSQL closes) is released
by PostgreSQL itself, and another node takes it at its next try (every `retry_s`). The same
pass checks the connection with a round trip: a node that cannot reach the database stops
believing it holds anything at once, even before the connection is found broken.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from typing import Any

import psycopg

from cpo_gateway import logs
from cpo_gateway.cluster.bus import Backoff, connect

log = logs.get(__name__)


def lock_key(job: str) -> int:
    """A job's advisory lock key: a signed 64-bit digest of its name."""
    digest = hashlib.sha256(b"cpo-gateway/lease/" + job.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leases:
    def __init__(self, dsn: str, node_id: str, jobs: Iterable[str], *, retry_s: float) -> None:
        self._dsn = dsn
        self.node_id = node_id
        self.jobs = tuple(sorted(set(jobs)))
        self._retry_s = retry_s
        self._held: set[str] = set()
        self.taken = 0  # leases acquired since start
        self.lost = 0  # leases given up because the connection broke

    def holds(self, job: str) -> bool:
        """Whether this node holds the job's lease now (jobs without a lease: never)."""
        return job in self._held

    @property
    def held(self) -> list[str]:
        return sorted(self._held)

    def _drop_all(self, why: str) -> None:
        if self._held:
            self.lost += len(self._held)
            log.warning("cluster.leases_lost", node=self.node_id, jobs=self.held, reason=why)
        self._held.clear()

    async def keep(self) -> None:
        """Try for every lease not held, every `retry_s`, until cancelled (a service)."""
        backoff = Backoff()
        while True:
            try:
                async with await connect(self._dsn, "leases", self.node_id) as conn:
                    backoff.reset()
                    while True:
                        await self._pass(conn)
                        await asyncio.sleep(self._retry_s)
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
                self._drop_all(str(exc) or "the database did not answer in time")
                await asyncio.sleep(backoff.next())
            finally:
                self._held.clear()  # the connection is gone, and every lock with it

    async def _pass(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with asyncio.timeout(max(1.0, self._retry_s)):
            await conn.execute("SELECT 1")
            for job in self.jobs:
                if job in self._held:
                    continue
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(job),))
                row = await cur.fetchone()
                if row is not None and row[0]:
                    self._held.add(job)
                    self.taken += 1
                    log.info("cluster.lease_taken", node=self.node_id, job=job)
