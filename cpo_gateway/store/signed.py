"""The first and last signed meter reading of each transaction (migration 16).

Each is kept as JSON beside the transaction: the reading and the charger's timestamp of it,
so that readings arriving out of order still leave the earliest and the latest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cpo_gateway.bridge.model import EnergySample, SignedReading
from cpo_gateway.store.sql import Conn

SIGNED_SQL = """
UPDATE transactions SET
    signed_start = CASE WHEN (signed_start IS NULL OR :ts < json_extract(signed_start, '$.at'))
        THEN :signed ELSE signed_start END,
    signed_end = CASE WHEN (signed_end IS NULL OR :ts >= json_extract(signed_end, '$.at'))
        THEN :signed ELSE signed_end END
WHERE id = :tx
"""


def signed_params(transaction_id: int, samples: Sequence[EnergySample]) -> list[dict[str, object]]:
    """One parameter set of SIGNED_SQL per signed reading, in time order."""
    out: list[dict[str, object]] = []
    for s in sorted(samples, key=lambda x: x.timestamp):
        if s.signed is None:
            continue
        r = s.signed
        text = json.dumps(
            {
                "at": s.timestamp,
                "data": r.data,
                "plain": r.plain,
                "encoding": r.encoding,
                "public_key": r.public_key,
                "method": r.method,
            },
            separators=(",", ":"),
        )
        out.append({"tx": transaction_id, "ts": s.timestamp, "signed": text})
    return out


def record_signed_sync(conn: Conn, transaction_id: int, samples: Sequence[EnergySample]) -> None:
    for params in signed_params(transaction_id, samples):
        conn.execute(SIGNED_SQL, params)


def signed_from_column(text: object) -> SignedReading | None:
    """The reading a column holds (None: none, or not what this module wrote)."""
    if not isinstance(text, str):
        return None
    try:
        d = json.loads(text)
    except ValueError:
        return None
    if not isinstance(d, dict) or not all(
        isinstance(d.get(k), str) for k in ("data", "plain", "encoding")
    ):
        return None
    key, method = d.get("public_key"), d.get("method")
    return SignedReading(
        data=d["data"],
        plain=d["plain"],
        encoding=d["encoding"],
        public_key=key if isinstance(key, str) else None,
        method=method if isinstance(method, str) else None,
        at=d.get("at") if isinstance(d.get("at"), str) else None,
    )
