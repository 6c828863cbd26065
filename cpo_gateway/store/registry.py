"""Chargers, the RFID whitelist, connector and EVSE status, posted stations."""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from cpo_gateway.bridge.model import BootInfo
from cpo_gateway.bridge.ports import LocalListRecord, NewOutbox, PostedStation
from cpo_gateway.store.db import Database
from cpo_gateway.store.outbox import insert_outbox_sync
from cpo_gateway.store.sql import Conn, Row, is_postgres

_LOCAL_LIST_SELECT = (
    "SELECT id, local_list_version, ocpp_list_version, local_list_supported, local_list_result, "
    "local_list_detail, local_list_failures, local_list_failed_version, local_list_next_at, "
    "local_list_tried_at FROM chargers"
)


def _local_list_record(row: Row) -> LocalListRecord:
    return LocalListRecord(
        charge_point=str(row[0]),
        version=int(row[1]),
        ocpp_version=int(row[2]),
        supported=bool(row[3]),
        result=None if row[4] is None else str(row[4]),
        detail=str(row[5] or ""),
        failures=int(row[6]),
        failed_version=int(row[7]),
        next_at=None if row[8] is None else float(row[8]),
        tried_at=None if row[9] is None else float(row[9]),
    )


class RegistryRepo:
    db: Database

    # --- chargers ------------------------------------------------------------------------------
    async def password_hash(self, charge_point_id: str) -> str | None:
        row = await self.db.one(
            "SELECT password_hash FROM chargers WHERE id = ?", (charge_point_id,)
        )
        return None if row is None or row[0] is None else str(row[0])

    async def set_password_hash(self, charge_point_id: str, password_hash: str) -> None:
        await self.db.write(
            "INSERT INTO chargers (id, password_hash) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash",
            (charge_point_id, password_hash),
        )

    async def record_boot(self, info: BootInfo, status: str, at: str) -> None:
        # One statement: it shares a group commit with other writes.
        await self.db.write(
            "INSERT INTO chargers (id, vendor, model, serial, firmware, boot_status, booted_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "vendor = excluded.vendor, model = excluded.model, serial = excluded.serial, "
            "firmware = excluded.firmware, boot_status = excluded.boot_status, "
            "booted_at = excluded.booted_at",
            (
                info.charge_point_id,
                info.vendor,
                info.model,
                info.serial,
                info.firmware,
                status,
                at,
            ),
        )

    async def record_presence(self, charge_point_id: str, connected: bool, at: float) -> None:
        """Whether the charger is connected now, and since when (for `chargers list`)."""
        await self.db.write(
            "INSERT INTO chargers (id, connected, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET connected = excluded.connected, "
            "last_seen = excluded.last_seen",
            (charge_point_id, int(connected), at),
        )

    async def forget_presence(self, at: float) -> None:
        """At start nobody is connected: a gateway that died left its chargers marked so."""
        await self.db.write(
            "UPDATE chargers SET connected = 0, last_seen = ? WHERE connected = 1", (at,)
        )

    async def local_list_state(self, charge_point_id: str) -> tuple[int, int, bool]:
        """(whitelist version pushed, OCPP listVersion the charger holds, supported)."""
        row = await self.db.one(
            "SELECT local_list_version, ocpp_list_version, local_list_supported FROM chargers "
            "WHERE id = ?",
            (charge_point_id,),
        )
        return (0, 0, True) if row is None else (int(row[0]), int(row[1]), bool(row[2]))

    async def local_list_record(self, charge_point_id: str) -> LocalListRecord:
        row = await self.db.one(_LOCAL_LIST_SELECT + " WHERE id = ?", (charge_point_id,))
        return LocalListRecord(charge_point_id) if row is None else _local_list_record(row)

    async def local_list_records(self) -> list[LocalListRecord]:
        rows = await self.db.all(_LOCAL_LIST_SELECT + " ORDER BY id")
        return [_local_list_record(r) for r in rows]

    async def save_local_list_record(self, record: LocalListRecord) -> None:
        await self.db.write(
            "INSERT INTO chargers (id, local_list_version, ocpp_list_version, "
            "local_list_supported, local_list_result, local_list_detail, local_list_failures, "
            "local_list_failed_version, local_list_next_at, local_list_tried_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "local_list_version = excluded.local_list_version, "
            "ocpp_list_version = excluded.ocpp_list_version, "
            "local_list_supported = excluded.local_list_supported, "
            "local_list_result = excluded.local_list_result, "
            "local_list_detail = excluded.local_list_detail, "
            "local_list_failures = excluded.local_list_failures, "
            "local_list_failed_version = excluded.local_list_failed_version, "
            "local_list_next_at = excluded.local_list_next_at, "
            "local_list_tried_at = excluded.local_list_tried_at",
            (
                record.charge_point,
                record.version,
                record.ocpp_version,
                int(record.supported),
                record.result,
                record.detail,
                record.failures,
                record.failed_version,
                record.next_at,
                record.tried_at,
            ),
        )

    # --- whitelist -----------------------------------------------------------------------------
    async def replace_whitelist(self, emp: str, uids: Sequence[str], at: str) -> tuple[int, int]:
        """Make `uids` the complete list of `emp`, atomically; returns (new, total).

        A list passed in is sorted in place."""
        # Sorted rows go into the b-tree fastest; sort the caller's list in place rather
        # than copy a million-entry list (memory matters at that size).
        ordered = uids if isinstance(uids, list) else list(uids)
        ordered.sort()

        def work(conn: Conn) -> tuple[int, int]:
            _receive_uids(conn, ordered)
            removed = conn.execute(
                "DELETE FROM whitelist WHERE partner = ? AND NOT EXISTS "
                "(SELECT 1 FROM incoming WHERE incoming.uid = whitelist.uid)",
                (emp,),
            ).rowcount
            # Only UIDs new to this partner are inserted: the row count is `processed`.
            new = conn.execute(
                # WHERE true: SQLite's parser needs it before ON CONFLICT after a SELECT.
                "INSERT INTO whitelist (partner, uid) SELECT DISTINCT ?, uid FROM incoming "
                "WHERE true ON CONFLICT DO NOTHING",
                (emp,),
            ).rowcount
            row = conn.execute("SELECT COUNT(DISTINCT uid) FROM incoming").fetchone()
            total = int(row[0]) if row else 0
            conn.execute("DELETE FROM incoming")
            conn.execute(
                "INSERT INTO whitelist_meta (partner, count, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (partner) DO UPDATE SET count = excluded.count, "
                "updated_at = excluded.updated_at",
                (emp, total, at),
            )
            if new or removed:  # an unchanged list is not pushed to chargers again
                bump_whitelist_version(conn)
            return new, total

        return await self.db.run_write(work)

    async def whitelist_partners(self, uid: str) -> list[str]:
        rows = await self.db.all("SELECT partner FROM whitelist WHERE uid = ?", (uid,))
        return [str(r[0]) for r in rows]

    async def whitelist_counts(self) -> dict[str, int]:
        rows = await self.db.all("SELECT partner, count FROM whitelist_meta")
        return {str(r[0]): int(r[1]) for r in rows}

    async def whitelist_union(self) -> list[str]:
        """What chargers' local lists hold: every whitelist, and the partners' valid tokens
        whose policy lets a charger answer for them (store/tokens.py)."""
        rows = await self.db.all(
            "SELECT uid FROM whitelist UNION SELECT t.card_uid FROM tokens t "
            "JOIN token_lists l ON l.partner = t.partner AND l.generation = t.generation "
            "WHERE t.card_uid IS NOT NULL AND t.valid = 1 AND t.policy != 'online_only' "
            "ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    async def whitelist_page(
        self, emp: str | None, limit: int, offset: int = 0
    ) -> list[tuple[str, str]]:
        if emp:
            rows = await self.db.all(
                "SELECT partner, uid FROM whitelist WHERE partner = ? ORDER BY uid LIMIT ? OFFSET ?",
                (emp, limit, offset),
            )
        else:
            rows = await self.db.all(
                "SELECT partner, uid FROM whitelist ORDER BY partner, uid LIMIT ? OFFSET ?",
                (limit, offset),
            )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def whitelist_version(self) -> int:
        row = await self.db.one("SELECT value FROM meta WHERE key = 'whitelist_version'")
        return int(row[0]) if row is not None and row[0] is not None else 0

    # --- status --------------------------------------------------------------------------------
    async def record_connector_state(
        self,
        charge_point: str,
        connector: int,
        state: str | None,
        error_code: str,
        at: str | None,
        *,
        trusted_at: float | None = None,
        ignored: str | None = None,
        now: float | None = None,
    ) -> None:
        """A reported status becomes the connector's state (`trusted_at`: the epoch seconds
        of the timestamp its state is ordered by, when the core trusts one), or, when the
        core did not apply it, is kept apart with the reason (`ignored`)."""
        # One statement either way: it shares a group commit with other writes.
        if ignored is not None:
            await self.db.write(
                "INSERT INTO connector_status_ignored (charge_point, connector, state, "
                "error_code, reported_at, received_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    charge_point,
                    connector,
                    state,
                    error_code,
                    at,
                    time.time() if now is None else now,
                    ignored,
                ),
            )
            return
        await self.db.write(
            "INSERT INTO connector_status (charge_point, connector, state, error_code, "
            "reported_at, trusted_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (charge_point, connector) DO UPDATE SET "
            "state = excluded.state, error_code = excluded.error_code, "
            "reported_at = excluded.reported_at, trusted_at = excluded.trusted_at",
            (charge_point, connector, state, error_code, at, trusted_at),
        )

    async def connector_trusted_at(self) -> dict[tuple[str, int], float]:
        """The trusted timestamp (epoch seconds) of each connector's applied status."""
        rows = await self.db.all(
            "SELECT charge_point, connector, trusted_at FROM connector_status "
            "WHERE trusted_at IS NOT NULL"
        )
        return {(str(r[0]), int(r[1])): float(r[2]) for r in rows}

    async def prune_ignored_statuses(self, before: float) -> int:
        def work(conn: Conn) -> int:
            return conn.execute(
                "DELETE FROM connector_status_ignored WHERE received_at < ?", (before,)
            ).rowcount

        return await self.db.run_write(work)

    async def boot_infos(self) -> dict[str, BootInfo]:
        """What each charger said of itself in its last BootNotification (the console)."""
        rows = await self.db.all("SELECT id, vendor, model, serial, firmware FROM chargers")
        return {str(r[0]): BootInfo(str(r[0]), r[1] or "", r[2] or "", r[3], r[4]) for r in rows}

    async def boot_times(self) -> dict[str, str]:
        """When the gateway last saw each charger's BootNotification (RFC 3339)."""
        rows = await self.db.all("SELECT id, booted_at FROM chargers WHERE booted_at IS NOT NULL")
        return {str(r[0]): str(r[1]) for r in rows}

    async def connector_states(self) -> dict[tuple[str, int], str | None]:
        rows = await self.db.all("SELECT charge_point, connector, state FROM connector_status")
        return {(str(r[0]), int(r[1])): r[2] for r in rows}

    async def evse_statuses(self) -> dict[str, str]:
        rows = await self.db.all("SELECT evse_id, status FROM evse_status")
        return {str(r[0]): str(r[1]) for r in rows}

    async def set_evse_status(
        self, evse_id: str, status: str, outbox: Sequence[NewOutbox], now: float
    ) -> None:
        def work(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO evse_status (evse_id, status, changed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (evse_id) DO UPDATE SET status = excluded.status, "
                "changed_at = excluded.changed_at",
                (evse_id, status, now),
            )
            insert_outbox_sync(conn, outbox, now)

        await self.db.run_write(work)

    # --- stations ------------------------------------------------------------------------------
    async def posted_stations(self, emp: str) -> dict[str, PostedStation]:
        rows = await self.db.all(
            "SELECT station_id, hash, payload, deleted, posted_at FROM stations_posted "
            "WHERE emp = ?",
            (emp,),
        )
        return {
            str(r[0]): PostedStation(str(r[1]), orjson.loads(r[2]), bool(r[3]), r[4] is not None)
            for r in rows
        }

    async def delivered_stations(self, emp: str) -> set[str]:
        """Ids of stations whose current version the EMP has received (no payload parsed)."""
        rows = await self.db.all(
            "SELECT station_id FROM stations_posted WHERE emp = ? AND posted_at IS NOT NULL "
            "AND deleted = 0",
            (emp,),
        )
        return {str(r[0]) for r in rows}

    async def queued_tariffs(self, emp: str) -> dict[str, tuple[str, bool]]:
        rows = await self.db.all(
            "SELECT tariff_id, hash, deleted FROM tariffs_queued WHERE emp = ?", (emp,)
        )
        return {str(r[0]): (str(r[1]), bool(r[2])) for r in rows}

    async def queue_tariff(
        self, emp: str, tariff_id: str, digest: str, deleted: bool, outbox: NewOutbox, now: float
    ) -> None:
        def work(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO tariffs_queued (emp, tariff_id, hash, deleted, queued_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (emp, tariff_id) DO UPDATE SET "
                "hash = excluded.hash, deleted = excluded.deleted, queued_at = excluded.queued_at",
                (emp, tariff_id, digest, int(deleted), now),
            )
            insert_outbox_sync(conn, [outbox], now)

        await self.db.run_write(work)

    async def queue_station(
        self, emp: str, station_id: str, digest: str, deleted: bool, outbox: NewOutbox, now: float
    ) -> None:
        def work(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO stations_posted (emp, station_id, hash, payload, deleted, queued_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (emp, station_id) DO UPDATE SET "
                "hash = excluded.hash, payload = excluded.payload, deleted = excluded.deleted, "
                "queued_at = excluded.queued_at, posted_at = NULL",
                (emp, station_id, digest, orjson.dumps(outbox.payload).decode(), int(deleted), now),
            )
            insert_outbox_sync(conn, [outbox], now)

        await self.db.run_write(work)


def bump_whitelist_version(conn: Conn) -> None:
    """What chargers' local lists should hold has changed (they are pushed again)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('whitelist_version', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)"
    )


def _receive_uids(conn: Conn, ordered: Sequence[str]) -> None:
    """`ordered` into the connection's empty temporary table `incoming` (duplicates may
    remain: readers say DISTINCT)."""
    if is_postgres(conn):
        # COPY: a million rows in seconds, where a million INSERTs take minutes.
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (uid TEXT NOT NULL)")
        conn.execute("TRUNCATE incoming")
        raw = conn.raw  # type: ignore[attr-defined]
        with raw.cursor().copy("COPY incoming (uid) FROM STDIN") as copy:
            for uid in ordered:
                copy.write_row((uid,))
        conn.execute("ANALYZE incoming")
        return
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (uid TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.execute("DELETE FROM incoming")
    conn.executemany(
        "INSERT INTO incoming (uid) VALUES (?) ON CONFLICT DO NOTHING", ((u,) for u in ordered)
    )
