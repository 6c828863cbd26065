"""Read-only views for the operator's commands (`chargers list|show`, `sessions list`)."""

from __future__ import annotations

from dataclasses import dataclass

from cpo_gateway.store.db import Database


@dataclass(frozen=True, slots=True)
class ChargerRow:
    id: str
    connected: bool
    last_seen: float | None  # when it last connected or disconnected (epoch seconds)
    boot_status: str | None
    vendor: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    booted_at: str | None
    list_version: int  # the whitelist version last pushed to it
    list_result: str | None
    list_detail: str
    list_supported: bool


@dataclass(frozen=True, slots=True)
class ConnectorRow:
    connector: int
    state: str | None
    error_code: str | None
    reported_at: str | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    state: str
    origin: str
    evse_id: str | None
    emp: str | None
    transaction_id: int | None
    auth_path: str | None
    created_at: str
    started_at: str | None
    stopped_at: str | None
    energy_wh: float | None  # meter at the stop (or the last reading) minus the start


_CHARGER_SELECT = (
    "SELECT id, connected, last_seen, boot_status, vendor, model, serial, firmware, booted_at, "
    "local_list_version, local_list_result, local_list_detail, local_list_supported "
    "FROM chargers"
)


def _charger(r: tuple[object, ...]) -> ChargerRow:
    def text(v: object) -> str | None:
        return None if v is None else str(v)

    return ChargerRow(
        id=str(r[0]),
        connected=bool(r[1]),
        last_seen=None if r[2] is None else float(str(r[2])),
        boot_status=text(r[3]),
        vendor=text(r[4]),
        model=text(r[5]),
        serial=text(r[6]),
        firmware=text(r[7]),
        booted_at=text(r[8]),
        list_version=int(str(r[9])),
        list_result=text(r[10]),
        list_detail=str(r[11] or ""),
        list_supported=bool(r[12]),
    )


class ReportsRepo:
    db: Database

    async def charger_rows(self) -> list[ChargerRow]:
        return [_charger(tuple(r)) for r in await self.db.all(_CHARGER_SELECT + " ORDER BY id")]

    async def charger_row(self, charge_point_id: str) -> ChargerRow | None:
        row = await self.db.one(_CHARGER_SELECT + " WHERE id = ?", (charge_point_id,))
        return None if row is None else _charger(tuple(row))

    async def connector_rows(self, charge_point_id: str) -> list[ConnectorRow]:
        rows = await self.db.all(
            "SELECT connector, state, error_code, reported_at FROM connector_status "
            "WHERE charge_point = ? ORDER BY connector",
            (charge_point_id,),
        )
        return [ConnectorRow(int(r[0]), r[1], r[2], r[3]) for r in rows]

    async def evse_status_rows(self) -> dict[str, tuple[str, float]]:
        """EVSE ID -> (the status last queued for the EMPs, when it changed)."""
        rows = await self.db.all("SELECT evse_id, status, changed_at FROM evse_status")
        return {str(r[0]): (str(r[1]), float(r[2])) for r in rows}

    async def session_rows(self, limit: int, state: str | None = None) -> list[SessionRow]:
        # `? IS NULL OR`: one constant statement serves both (no SQL is built from input);
        # the CAST gives the parameter a type where PostgreSQL could not infer one.
        rows = await self.db.all(
            "SELECT s.id, s.state, s.origin, s.evse_id, s.emp, s.transaction_id, s.auth_path, "
            "s.created_at, t.started_at, t.stopped_at, t.meter_start_wh, "
            "COALESCE(t.meter_stop_wh, t.last_wh) "
            "FROM sessions s LEFT JOIN transactions t ON t.id = s.transaction_id "
            "WHERE CAST(? AS TEXT) IS NULL OR s.state = ? ORDER BY s.created_at DESC LIMIT ?",
            (state, state, limit),
        )
        return [
            SessionRow(
                id=str(r[0]),
                state=str(r[1]),
                origin=str(r[2]),
                evse_id=r[3],
                emp=r[4],
                transaction_id=r[5],
                auth_path=r[6],
                created_at=str(r[7]),
                started_at=r[8],
                stopped_at=r[9],
                energy_wh=None if r[10] is None or r[11] is None else float(r[11]) - float(r[10]),
            )
            for r in rows
        ]
