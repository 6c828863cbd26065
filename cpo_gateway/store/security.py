"""Security events chargers report and the certificates signed for them."""

from __future__ import annotations

from dataclasses import dataclass

from cpo_gateway.store.db import Database


@dataclass(frozen=True, slots=True)
class SecurityEventRow:
    charge_point: str
    type: str
    timestamp: str
    tech_info: str | None
    received_at: float


@dataclass(frozen=True, slots=True)
class IssuedCertificateRow:
    charge_point: str
    serial: str
    sha256: str
    not_after: str
    status: str
    issued_at: float


class SecurityRepo:
    db: Database

    async def record_security_event(
        self,
        charge_point_id: str,
        type_: str,
        timestamp: str,
        tech_info: str | None,
        received_at: float,
    ) -> None:
        await self.db.write(
            "INSERT INTO security_events (charge_point, type, timestamp, tech_info, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (charge_point_id, type_, timestamp, tech_info, received_at),
        )

    async def record_certificate(
        self,
        charge_point_id: str,
        serial: str,
        sha256: str,
        not_after: str,
        status: str,
        issued_at: float,
    ) -> None:
        await self.db.write(
            "INSERT INTO issued_certificates "
            "(serial, charge_point, sha256, not_after, status, issued_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (serial) DO UPDATE SET status = excluded.status",
            (serial, charge_point_id, sha256, not_after, status, issued_at),
        )

    async def security_events(
        self, charge_point_id: str, limit: int = 50
    ) -> list[SecurityEventRow]:
        """The newest first."""
        rows = await self.db.all(
            "SELECT charge_point, type, timestamp, tech_info, received_at FROM security_events "
            "WHERE charge_point = ? ORDER BY id DESC LIMIT ?",
            (charge_point_id, limit),
        )
        return [SecurityEventRow(str(r[0]), str(r[1]), str(r[2]), r[3], float(r[4])) for r in rows]

    async def issued_certificates(self, charge_point_id: str) -> list[IssuedCertificateRow]:
        rows = await self.db.all(
            "SELECT charge_point, serial, sha256, not_after, status, issued_at "
            "FROM issued_certificates WHERE charge_point = ? ORDER BY issued_at DESC",
            (charge_point_id,),
        )
        return [
            IssuedCertificateRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), float(r[5]))
            for r in rows
        ]
