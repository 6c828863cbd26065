"""Identifier rules shared by both protocols: RFID UIDs, EVSE IDs, EVCO IDs.

One normaliser for UIDs is used everywhere (whitelist ingest, Authorize, StartTransaction,
CDRs) so the same card never looks like two cards.
"""

from __future__ import annotations

import re

UID_LENGTHS = (8, 14, 20)
_HEX = frozenset("0123456789ABCDEF")

EVSE_ID_RE = re.compile(r"[A-Za-z]{2}\*?[A-Za-z0-9]{3}\*?E[A-Za-z0-9*]{1,30}")
EVCO_ID_RE = re.compile(r"[A-Za-z]{2}[*-]?[A-Za-z0-9]{3}[*-]?[A-Za-z0-9]{6}[*-]?[0-9X]")
CPO_ID_RE = re.compile(r"[A-Za-z]{2}\*?[A-Za-z0-9]{3}")


class InvalidUid(ValueError):
    """A UID that is not hex or longer than 20 characters."""


def normalise_uid(raw: str) -> str:
    """Upper-case a hex UID and left zero-pad it to the next valid length (8, 14 or 20).

    Raises InvalidUid for empty, non-hex or over-long values.
    """
    uid = raw.strip().upper()
    if not uid or len(uid) > UID_LENGTHS[-1] or not _HEX.issuperset(uid):
        raise InvalidUid(raw)
    for length in UID_LENGTHS:
        if len(uid) <= length:
            return uid.rjust(length, "0")
    raise InvalidUid(raw)  # pragma: no cover - unreachable: length checked above


def try_normalise_uid(raw: str) -> str | None:
    """The normalised UID, or None when raw is not a UID (e.g. an EVCO ID used as idTag)."""
    try:
        return normalise_uid(raw)
    except InvalidUid:
        return None


def is_evse_id(value: str) -> bool:
    return EVSE_ID_RE.fullmatch(value) is not None


def is_evco_id(value: str) -> bool:
    return EVCO_ID_RE.fullmatch(value) is not None


def normalise_evco_id(value: str) -> str:
    """Canonical form of an EVCO ID: upper case, separators removed (DE8PS1234567X).

    Used to compare EVCO IDs and as an OCPP idTag (at most 20 characters).
    """
    return value.replace("*", "").replace("-", "").upper()
