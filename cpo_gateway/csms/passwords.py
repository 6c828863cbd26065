"""Charger passwords (OCPP security profiles 1-2): the scrypt hashes live in
cpo_gateway.passwords (the console checks operators with them too); HTTP Basic parsing here."""

from __future__ import annotations

import base64

from cpo_gateway.passwords import hash_password, verify_password

__all__ = ["hash_password", "parse_basic", "verify_password"]


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(username, password) from an HTTP Basic Authorization header, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
