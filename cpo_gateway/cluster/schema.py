"""The cluster's tables (migration 17): who is alive, which node holds which charger, and
the bodies of messages too large for a NOTIFY.

Kept in one place so the migration lists (SQLite and PostgreSQL) take it in one piece. On
SQLite the tables exist but stay empty: a cluster needs PostgreSQL (check-config says so).
"""

from __future__ import annotations

# PostgreSQL: the node's own clock is never compared with another's; `seen_at` and
# `connected_at` are the database's now().
POSTGRES = """
CREATE TABLE IF NOT EXISTS cluster_nodes (
    node_id TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS charger_nodes (
    charge_point_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    connected_at TIMESTAMPTZ NOT NULL,
    epoch BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS charger_nodes_node ON charger_nodes (node_id);
CREATE TABLE IF NOT EXISTS cluster_messages (
    id BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""

SQLITE = """
CREATE TABLE cluster_nodes (
    node_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    seen_at TEXT NOT NULL
);
CREATE TABLE charger_nodes (
    charge_point_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    connected_at TEXT NOT NULL,
    epoch INTEGER NOT NULL
);
CREATE INDEX charger_nodes_node ON charger_nodes (node_id);
CREATE TABLE cluster_messages (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""
