"""Migration 11 on a database from before it: the outbox rows pending under the old,
protocol-named kinds are renamed in place and delivered once each by the upgraded gateway;
delivered and dead rows keep their state."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.cdr import cdr_to_dict
from cpo_gateway.bridge.model import Cdr, Interval, User, UserKind
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.station_sync import digest, station_payload
from cpo_gateway.config import Config, load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.store.db import statements
from cpo_gateway.store.migrations import MIGRATIONS
from tests.conftest import PARTNER, running_gateway, write_config

pytestmark = pytest.mark.sqlite_only(
    reason="builds a schema-10 SQLite file with sqlite3 and upgrades that file"
)

EVSE = "DE*CPO*E1001*1"
OTHER_EVSE = "DE*CPO*E1001*2"
BEFORE = 10  # the schema version the database was left at


def _cdr(session_id: str) -> dict[str, object]:
    start = time.time() - 3600
    cdr = Cdr(
        session_id=session_id,
        evse_id=EVSE,
        user=User(UserKind.EVCO_ID, "DE-8PS-C12345-6"),
        session_interval=Interval(
            time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start)),
            time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start + 1800)),
        ),
        partner_identifier=PARTNER,
        energy_kwh=4.2,
    )
    return cdr_to_dict(cdr)


def old_database(cfg: Config) -> dict[str, int]:
    """A database at schema version 10 with outbox rows under the old kind names: every
    station pending (as the first start left them), one status pending and one dead, a CDR
    pending and one delivered. Returns the row ids by what they are."""
    path = cfg.gateway.database
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for version, script in enumerate(MIGRATIONS[:BEFORE], start=1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (version,))
    now = time.time()
    ids: dict[str, int] = {}

    def row(kind: str, key: str, payload: object, state: str = "pending") -> int:
        cur = conn.execute(
            "INSERT INTO outbox (emp, kind, key, payload, state, created_at, next_at) "
            "VALUES ('sandbox', ?, ?, ?, ?, ?, ?)",
            (kind, key, orjson.dumps(payload).decode(), state, now, now),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    for station in cfg.catalogue.stations:
        payload = station_payload(station, PARTNER, False)
        conn.execute(
            "INSERT INTO stations_posted (emp, station_id, hash, payload, queued_at) "
            "VALUES ('sandbox', ?, ?, ?, ?)",
            (station.id, digest(station), orjson.dumps(payload).decode(), now),
        )
        ids[f"station {station.id}"] = row("station-post", station.id, payload)
    status = {"evse_id": EVSE, "status": "Available", "partner_identifier": PARTNER}
    ids["status"] = row("connector-post-status", EVSE, status)
    dead = {"evse_id": OTHER_EVSE, "status": "Offline", "partner_identifier": PARTNER}
    ids["dead status"] = row("connector-post-status", OTHER_EVSE, dead, "dead")
    ids["cdr"] = row("session-post", "s-pending", _cdr("s-pending"))
    ids["delivered cdr"] = row("session-post", "s-old", _cdr("s-old"), "delivered")
    conn.close()
    return ids


async def test_pending_rows_of_the_old_kinds_are_delivered_once_after_the_upgrade(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    cfg = load_config(write_config(tmp_path, emp_url=emp.url), {})
    ids = old_database(cfg)
    gateway = Gateway(cfg)
    async with running_gateway(gateway, emp) as h:
        await emp.wait_for(
            lambda: "s-pending" in emp.cdrs and len(emp.stations) == 3 and EVSE in emp.statuses,
            timeout=20,
        )
        db = h.store.db
        for _ in range(500):  # until the answers are marked
            undelivered = await db.scalar(
                "SELECT COUNT(*) FROM outbox WHERE id IN (SELECT value FROM json_each(?)) "
                "AND state != 'delivered'",
                (orjson.dumps([i for k, i in ids.items() if "dead" not in k]).decode(),),
            )
            if undelivered == 0:
                break
            await asyncio.sleep(0.02)
        rows = {r["id"]: dict(r) for r in await db.all("SELECT * FROM outbox")}
        version = await db.scalar("SELECT MAX(version) FROM schema_version")
        index = await db.scalar("SELECT sql FROM sqlite_master WHERE name = 'outbox_coalesce'")

    assert version == len(MIGRATIONS)
    # Every old row is there under its new kind, same id; none is left under an old name.
    assert {r["kind"] for r in rows.values()} <= {k.value for k in Owed}
    for what, row_id in ids.items():
        expected = (
            Owed.STATION
            if what.startswith("station")
            else Owed.EVSE_STATUS
            if "status" in what
            else Owed.CDR
        )
        assert rows[row_id]["kind"] == expected, what
    assert rows[ids["cdr"]]["state"] == "delivered"
    assert all(rows[i]["state"] == "delivered" for k, i in ids.items() if k.startswith("station"))
    assert rows[ids["dead status"]]["state"] == "dead"
    # Delivered once each: the CDR pending before, never the one delivered before; the
    # stations the old rows carried, not queued a second time by the start's sync.
    assert [c["session-id"] for c in emp.calls("session-post")] == ["s-pending"]
    assert emp.duplicates == 0
    assert sorted(c["station"]["id"] for c in emp.calls("station-post")) == sorted(
        s.id for s in cfg.catalogue.stations
    )
    # The coalescing index now covers the new kinds, session updates included.
    assert index is not None and "'evse-status'" in index and "'session-update'" in index


async def test_migration_11_renames_nothing_twice_and_keeps_one_pending_status_per_evse(
    tmp_path: Path,
) -> None:
    cfg = load_config(write_config(tmp_path), {})
    old_database(cfg)
    conn = sqlite3.connect(cfg.gateway.database, isolation_level=None)
    for statement in statements(MIGRATIONS[10]):
        conn.execute(statement)
    before = conn.execute("SELECT id, kind, state FROM outbox ORDER BY id").fetchall()
    for statement in statements(MIGRATIONS[10]):  # idempotent: again changes nothing
        conn.execute(statement)
    assert conn.execute("SELECT id, kind, state FROM outbox ORDER BY id").fetchall() == before
    # A second pending status for the same EVSE and EMP is refused by the index.
    try:
        conn.execute(
            "INSERT INTO outbox (emp, kind, key, payload, created_at, next_at) "
            "VALUES ('sandbox', 'evse-status', ?, '{}', 0, 0)",
            (EVSE,),
        )
    except sqlite3.IntegrityError:
        refused = True
    else:
        refused = False
    conn.close()
    assert refused
