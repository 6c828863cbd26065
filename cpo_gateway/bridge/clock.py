"""Time helpers: the core takes an injectable clock (epoch seconds)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(epoch: float) -> str:
    """2024-05-01T10:00:00+00:00: seconds, UTC, the offset written out."""
    return datetime.fromtimestamp(epoch, UTC).replace(microsecond=0).isoformat()


def parse_timestamp(timestamp: str | None) -> datetime | None:
    """A charger's ISO 8601 timestamp (UTC if it gives no offset); None if there is none or
    it does not parse."""
    if not timestamp:
        return None
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def to_rfc3339(timestamp: str | None) -> str | None:
    """A charger's ISO 8601 timestamp as RFC 3339 with an explicit offset (UTC if none given).

    The stored value stays exactly as sent; this is only for what goes to the EMP.
    """
    parsed = parse_timestamp(timestamp)
    return None if parsed is None else parsed.replace(microsecond=0).isoformat()


def to_epoch(timestamp: str | None) -> float | None:
    """A charger's ISO 8601 timestamp as epoch seconds (UTC if it gives no offset); None if
    there is none or it does not parse."""
    parsed = parse_timestamp(timestamp)
    return None if parsed is None else parsed.timestamp()
