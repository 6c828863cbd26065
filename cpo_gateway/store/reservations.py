"""Reservations partners asked for, and the charger's number for each."""

from __future__ import annotations

from collections.abc import Sequence

from cpo_gateway.bridge.ports import NewOutbox, Reservation, ReservationState
from cpo_gateway.store.db import Database
from cpo_gateway.store.outbox import settle_outbox_sync
from cpo_gateway.store.sql import Conn


class ReservationsRepo:
    db: Database

    async def save_reservation(self, r: Reservation, now: float) -> int:
        def work(conn: Conn) -> int:
            row = conn.execute(
                "INSERT INTO reservations (emp, ref, charge_point, connector, evse_id, "
                "expires_at, id_tag, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (emp, ref) DO UPDATE SET charge_point = excluded.charge_point, "
                "connector = excluded.connector, evse_id = excluded.evse_id, "
                "expires_at = excluded.expires_at, id_tag = excluded.id_tag, "
                "state = excluded.state RETURNING id",
                (
                    r.emp,
                    r.ref,
                    r.charge_point,
                    r.connector,
                    r.evse_id,
                    r.expires_at,
                    r.id_tag,
                    r.state,
                    now,
                ),
            ).fetchone()
            return int(row[0])

        return await self.db.run_write(work)

    async def reservation(self, emp: str, ref: str) -> Reservation | None:
        row = await self.db.one("SELECT * FROM reservations WHERE emp = ? AND ref = ?", (emp, ref))
        if row is None:
            return None
        return Reservation(
            emp=row["emp"],
            ref=row["ref"],
            charge_point=row["charge_point"],
            connector=row["connector"],
            evse_id=row["evse_id"],
            expires_at=row["expires_at"],
            id_tag=row["id_tag"],
            state=ReservationState(row["state"]),
            number=row["id"],
        )

    async def reservation_ended(
        self, number: int, state: ReservationState, settles: Sequence[NewOutbox]
    ) -> None:
        def work(conn: Conn) -> None:
            conn.execute("UPDATE reservations SET state = ? WHERE id = ?", (state, number))
            settle_outbox_sync(conn, settles)

        await self.db.run_write(work)
