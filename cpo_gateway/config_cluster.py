"""The [cluster] table: this node's name and its heartbeat, read beside config.py.

A cluster is on when the storage is PostgreSQL (the nodes share its database and talk
through it); there is nothing to switch on. A [cluster] table while the storage is SQLite is
refused: SQLite is one node's own file, and nodes could not see each other.

    [cluster]
    node_id = "gw-1"        # default: $CPO_GATEWAY_NODE_ID, else the host name
    heartbeat_s = 2.0       # how often this node says it is alive
    alive_s = 10.0          # a peer not heard of for this long is gone
    lease_retry_s = 3.0     # how often a node tries for a once-per-cluster job's lease
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cpo_gateway.config_storage import is_postgres_url
from cpo_gateway.tomlcheck import Table

NODE_ID_ENV = "CPO_GATEWAY_NODE_ID"
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")


@dataclass(frozen=True)
class ClusterConfig:
    node_id: str = ""
    url: str | None = None  # the PostgreSQL storage url: set, the cluster is on
    heartbeat_s: float = 2.0
    alive_s: float = 10.0
    lease_retry_s: float = 3.0

    @property
    def enabled(self) -> bool:
        return self.url is not None


def default_node_id(env: Mapping[str, str]) -> str:
    return env.get(NODE_ID_ENV, "").strip() or socket.gethostname()


def cluster_config(
    t: Table | None, storage_url: str | None, path: Path, env: Mapping[str, str], errors: list[str]
) -> ClusterConfig:
    """The [cluster] table (None: absent) for the storage at `storage_url`."""
    d = ClusterConfig()
    table = t or Table(path, {}, "cluster", errors)
    node_id = table.string(
        "node_id",
        default_node_id(env),
        hint="letters, digits and . _ : - (at most 63), unique in the cluster",
    )
    beat = table.number("heartbeat_s", d.heartbeat_s, lo=0.2, hi=60.0)
    alive = table.number("alive_s", d.alive_s, lo=1.0, hi=600.0)
    retry = table.number("lease_retry_s", d.lease_retry_s, lo=0.2, hi=600.0)
    table.finish()
    if isinstance(node_id, str) and not _NODE_ID.fullmatch(node_id):
        table.error("node_id", "letters, digits and . _ : - (at most 63)", repr(node_id))
    if isinstance(beat, float) and isinstance(alive, float) and alive < 2 * beat:
        table.error("alive_s", f"at least twice heartbeat_s ({2 * beat:g})", f"{alive:g}")
    postgres = storage_url is not None and is_postgres_url(storage_url)
    if t is not None and not postgres:
        sqlite = not storage_url or storage_url.startswith("sqlite:")
        errors.append(
            f"{path}: cluster: a cluster needs PostgreSQL storage, found "
            f"{'SQLite' if sqlite else repr((storage_url or '').split(':', 1)[0])} "
            '(hint: set [storage] url = "postgresql://..." or CPO_GATEWAY_STORAGE_URL on every '
            "node, or remove the [cluster] table)"
        )
    return ClusterConfig(
        node_id=str(node_id),
        url=storage_url if postgres else None,
        heartbeat_s=float(beat),
        alive_s=float(alive),
        lease_retry_s=float(retry),
    )
