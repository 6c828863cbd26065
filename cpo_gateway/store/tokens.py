"""Partners' tokens, by generation (migration 13).

`token_lists` says which generation of each partner's tokens is in force and which one a
full list is being received into. A token pushed alone goes into both, so a list finishing
after it does not undo it. Finishing a list is one small commit (the generation moves);
rows of generations neither in force nor being received are swept afterwards in batches of
SWEEP_BATCH, so no commit holds the writer for the length of a million-row delete. A version
of a token older (last_updated, UTC) than the one kept never replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from cpo_gateway.bridge.model import Listing, PartnerToken, TokenPolicy, TokensReplaced
from cpo_gateway.store.db import Database
from cpo_gateway.store.registry import bump_whitelist_version
from cpo_gateway.store.sql import Conn, Row

SWEEP_BATCH = 20_000
_UPSERT = (
    "INSERT INTO tokens (partner, generation, country_code, party_id, uid, type, card_uid, "
    "valid, policy, contract_id, group_id, last_updated, extra) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (partner, generation, country_code, party_id, uid, type) DO UPDATE SET "
    "card_uid = excluded.card_uid, valid = excluded.valid, policy = excluded.policy, "
    "contract_id = excluded.contract_id, group_id = excluded.group_id, "
    "last_updated = excluded.last_updated, extra = excluded.extra "
    # An older version than the one kept (out of order, or a list page older than a token
    # pushed while the list was read) leaves the newer one.
    "WHERE excluded.last_updated >= tokens.last_updated"
)


class PullSuperseded(RuntimeError):
    """A page or the end of a full list that is no longer the one being received."""


def _row(token: PartnerToken, generation: int) -> tuple[Any, ...]:
    return (
        token.partner,
        generation,
        token.country,
        token.party,
        token.uid,
        token.kind,
        token.card_uid,
        int(token.valid),
        token.policy.value,
        token.contract_id,
        token.group_id,
        token.last_updated,
        orjson.dumps(token.body or {}).decode(),
    )


def _listed(token: PartnerToken | None) -> bool:
    return (
        token is not None
        and token.card_uid is not None
        and token.valid
        and token.policy.in_local_lists
    )


def _generations(conn: Conn, partner: str) -> tuple[int, int | None]:
    """(generation in force, generation being received) of one partner, made if new."""
    conn.execute(
        "INSERT INTO token_lists (partner, generation) VALUES (?, 1) ON CONFLICT DO NOTHING",
        (partner,),
    )
    row = conn.execute(
        "SELECT generation, staging FROM token_lists WHERE partner = ?", (partner,)
    ).fetchone()
    return int(row[0]), None if row[1] is None else int(row[1])


def _token(row: Row | tuple[Any, ...]) -> PartnerToken:
    return PartnerToken(
        partner=str(row[0]),
        country=str(row[1]),
        party=str(row[2]),
        uid=str(row[3]),
        kind=str(row[4]),
        valid=bool(row[5]),
        policy=TokenPolicy(row[6]),
        contract_id=str(row[7]),
        group_id=None if row[8] is None else str(row[8]),
        last_updated=str(row[9]),
        body=orjson.loads(row[10]),
    )


_SELECT_ISSUED = (
    "SELECT t.partner, t.country_code, t.party_id, t.uid, t.type, t.valid, t.policy, "
    "t.contract_id, t.group_id, t.last_updated, t.extra FROM tokens t "
    "JOIN token_lists l ON l.partner = t.partner AND l.generation = t.generation"
)


class TokensRepo:
    db: Database

    async def upsert_token(self, token: PartnerToken, now: float) -> bool:
        def work(conn: Conn) -> bool:
            generation, staging = _generations(conn, token.partner)
            old = conn.execute(
                _SELECT_ISSUED + " WHERE t.partner = ? AND t.country_code = ? AND t.party_id = ? "
                "AND t.uid = ? AND t.type = ?",
                (token.partner, token.country, token.party, token.uid, token.kind),
            ).fetchone()
            rows = [_row(token, generation)]
            if staging is not None:
                rows.append(_row(token, staging))
            conn.executemany(_UPSERT, rows)
            if old is None:
                conn.execute(
                    "UPDATE token_lists SET count = count + 1 WHERE partner = ?", (token.partner,)
                )
            before = None if old is None else _token(old)
            if before is not None and token.last_updated < before.last_updated:
                return False  # older than what is kept: nothing changed
            changed = _listed(before) != _listed(token) or (
                _listed(token) and before is not None and before.card_uid != token.card_uid
            )
            if changed:
                bump_whitelist_version(conn)
            return changed

        return await self.db.run_write(work)

    async def token(
        self, partner: str, country: str, party: str, uid: str, kind: str | None
    ) -> PartnerToken | None:
        sql = _SELECT_ISSUED + (
            " WHERE t.partner = ? AND t.country_code = ? AND t.party_id = ? AND t.uid = ?"
        )
        params: list[Any] = [partner, country, party, uid]
        if kind is not None:
            sql += " AND t.type = ?"
            params.append(kind)
        row = await self.db.one(sql + " ORDER BY t.type LIMIT 1", params)
        return None if row is None else _token(row)

    async def card_token(self, partner: str, card_uid: str) -> tuple[str, ...] | None:
        row = await self.db.one(
            "SELECT t.country_code, t.party_id, t.uid, t.type, t.contract_id FROM tokens t "
            "JOIN token_lists l ON l.partner = t.partner AND l.generation = t.generation "
            "WHERE t.card_uid = ? AND t.partner = ? ORDER BY t.type = 'RFID' DESC LIMIT 1",
            (card_uid, partner),
        )
        return None if row is None else tuple(str(v) for v in row)

    async def token_listings(self, uid: str) -> list[Listing]:
        rows = await self.db.all(
            "SELECT t.partner, t.policy, t.valid FROM tokens t "
            "JOIN token_lists l ON l.partner = t.partner AND l.generation = t.generation "
            "WHERE t.card_uid = ? ORDER BY t.partner",
            (uid,),
        )
        return [Listing(str(r[0]), TokenPolicy(r[1]), bool(r[2])) for r in rows]

    async def issued_as(self, partner: str, card_uid: str) -> tuple[str, str] | None:
        row = await self.db.one(
            "SELECT t.uid, t.type FROM tokens t "
            "JOIN token_lists l ON l.partner = t.partner AND l.generation = t.generation "
            "WHERE t.card_uid = ? AND t.partner = ? ORDER BY t.type = 'RFID' DESC LIMIT 1",
            (card_uid, partner),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def token_counts(self) -> dict[str, int]:
        rows = await self.db.all("SELECT partner, count FROM token_lists")
        return {str(r[0]): int(r[1]) for r in rows}

    async def begin_token_list(self, partner: str, now: float) -> int:
        """A new generation to receive a full list into (an older one unfinished is
        dropped)."""

        def work(conn: Conn) -> int:
            generation, staging = _generations(conn, partner)
            pull = max(generation, staging or 0) + 1
            conn.execute("UPDATE token_lists SET staging = ? WHERE partner = ?", (pull, partner))
            return pull

        pull = await self.db.run_write(work)
        await self.sweep_tokens(partner)
        return pull

    async def stage_tokens(self, partner: str, pull: int, tokens: Sequence[PartnerToken]) -> None:
        def work(conn: Conn) -> None:
            if _generations(conn, partner)[1] != pull:
                raise PullSuperseded(f"{partner}: list {pull} is no longer being received")
            conn.executemany(_UPSERT, [_row(t, pull) for t in tokens])

        await self.db.run_write(work)

    async def finish_token_list(self, partner: str, pull: int, at: str) -> TokensReplaced:
        def work(conn: Conn) -> TokensReplaced:
            _, staging = _generations(conn, partner)
            if staging != pull:
                raise PullSuperseded(f"{partner}: list {pull} is no longer being received")
            previous = conn.execute(
                "SELECT count FROM token_lists WHERE partner = ?", (partner,)
            ).fetchone()
            total = conn.execute(
                "SELECT COUNT(*) FROM tokens WHERE partner = ? AND generation = ?",
                (partner, pull),
            ).fetchone()
            conn.execute(
                "UPDATE token_lists SET generation = ?, staging = NULL, count = ?, "
                "updated_at = ? WHERE partner = ?",
                (pull, int(total[0]), at, partner),
            )
            bump_whitelist_version(conn)
            return TokensReplaced(int(total[0]), int(previous[0]))

        replaced = await self.db.run_write(work)
        await self.sweep_tokens(partner)
        return replaced

    async def sweep_tokens(self, partner: str) -> int:
        """Delete rows of generations neither in force nor being received, in batches."""

        def batch(conn: Conn) -> int:
            generation, staging = _generations(conn, partner)
            return conn.execute(
                "DELETE FROM tokens WHERE id IN (SELECT id FROM tokens WHERE partner = ? "
                "AND generation NOT IN (?, ?) LIMIT ?)",
                (partner, generation, -1 if staging is None else staging, SWEEP_BATCH),
            ).rowcount

        swept = 0
        while True:
            n = await self.db.run_write(batch)
            swept += n
            if n < SWEEP_BATCH:
                return swept
