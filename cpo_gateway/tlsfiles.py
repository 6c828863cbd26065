"""Checks of a certificate and key pair before the gateway listens with them.

A bad pair found at start-up would crash `run` in the middle of starting listeners; found by
`check-config` (and `run`'s own config load) it is a configuration error naming the key.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY = b"-----BEGIN "  # PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY, ...


def check_pair(cert_file: Path, key_file: Path, now: datetime) -> list[tuple[str, str, str]]:
    """Problems as (key, expected, found); empty when the pair can serve TLS at `now`."""
    problems: list[tuple[str, str, str]] = []
    cert_pem = _read(cert_file, "cert_file", problems)
    key_pem = _read(key_file, "key_file", problems)
    if cert_pem is None or key_pem is None:
        return problems
    if _PEM_CERT not in cert_pem:
        problems.append(("cert_file", "a PEM certificate", f"{cert_file} holds no PEM certificate"))
        return problems
    if _PEM_KEY not in key_pem or b"PRIVATE KEY-----" not in key_pem:
        problems.append(("key_file", "a PEM private key", f"{key_file} holds no PEM private key"))
        return problems
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        problems.append(("cert_file", "a PEM certificate", f"{cert_file}: {exc}"))
        return problems
    if now < cert.not_valid_before_utc:
        when = cert.not_valid_before_utc.isoformat()
        problems.append(("cert_file", "a certificate valid now", f"not valid before {when}"))
    if now > cert.not_valid_after_utc:
        when = cert.not_valid_after_utc.isoformat()
        problems.append(("cert_file", "a certificate valid now", f"expired on {when}"))
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        found = f"{key_file} does not match {cert_file} ({exc.reason or exc})"
        problems.append(("key_file", "the private key of cert_file", found))
    return problems


def utc_now() -> datetime:
    return datetime.now(UTC)


def _read(path: Path, key: str, problems: list[tuple[str, str, str]]) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.append((key, "a readable PEM file", f"{path} ({exc.strerror or exc})"))
        return None
