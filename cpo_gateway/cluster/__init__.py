"""The cluster: nodes of one gateway that find each other through PostgreSQL.

An adapter like the others (it may import psycopg; the core never does): it talks to the core
through `ClusterSide` (bridge/core_ports.py) and implements the core's `ChargerControl`
(bridge/ports.py) over the nodes. No other adapter imports it; app.py wires it.

- `wire.py` the messages between nodes (NOTIFY payloads), parsed as outside input;
- `bus.py` LISTEN/NOTIFY on two supervised connections that reconnect with back-off;
- `presence.py` heartbeats (`cluster_nodes`) and which node holds which charger
  (`charger_nodes`: the newest connection wins, a late disconnect never undoes a takeover);
- `rpc.py` calls between nodes with the caller's deadline; `control.py` the charger commands
  (and the operators' admin channel) routed to the node that holds the charger;
- `leases.py` session advisory locks for the jobs that run once per cluster;
- `node.py` one node, wired. Its tables are migration 17 (store/migrations*.py).
"""

from cpo_gateway.cluster.node import ClusterNode, NodeSettings

__all__ = ["ClusterNode", "NodeSettings"]
