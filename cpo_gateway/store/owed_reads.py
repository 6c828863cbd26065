"""What partners are owed, read back: the newest outbox row per key of one kind (the
sessions and CDRs a partner may list). Delivered rows count until they are pruned."""

from __future__ import annotations

from cpo_gateway.bridge.ports import OutboxItem
from cpo_gateway.store.db import Database
from cpo_gateway.store.outbox_claims import outbox_item


class OwedReadsRepo:
    db: Database

    async def newest_owed(self, emp: str, kind: str) -> list[OutboxItem]:
        rows = await self.db.all(
            "SELECT o.* FROM outbox AS o JOIN ("
            "SELECT MAX(id) AS id FROM outbox WHERE emp = ? AND kind = ? GROUP BY key"
            ") AS newest ON o.id = newest.id ORDER BY o.created_at, o.id",
            (emp, kind),
        )
        return [outbox_item(r) for r in rows]
