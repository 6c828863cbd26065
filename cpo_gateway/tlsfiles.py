"""Checks of a certificate and key pair before the gateway listens with them.

A bad pair found at start-up would crash `run` in the middle of starting listeners; found by
`check-config` (and `run`'s own config load) it is a configuration error naming the key.
"""

from __future__ import annotations

import itertools
import ssl
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY = b"-----BEGIN "  # PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY, ...
PASSPHRASE_ENV_HINT = "the environment variable CPO_GATEWAY_SIGNING_CA_KEY_PASSPHRASE"  # noqa: S105


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


def check_client_certs(
    client_ca_file: Path | None,
    signing_ca_cert: Path | None,
    signing_ca_key: Path | None,
    organization: str | None,
    now: datetime,
    *,
    passphrase: bytes | None = None,
    judge_key: bool = True,
) -> list[tuple[str, str, str]]:
    """Problems of the profile-3 and signing keys of [ocpp.tls], as (key, expected, found).
    The signing key is decrypted here with `passphrase`, so a wrong one stops the start;
    `judge_key` False: the passphrase could not be read (said already), the key is not judged."""
    problems: list[tuple[str, str, str]] = []
    if client_ca_file is not None:
        _check_cas(client_ca_file, "client_ca_file", now, problems)
    if (signing_ca_cert is None) != (signing_ca_key is None):
        key = "signing_ca_key" if signing_ca_key is None else "signing_ca_cert"
        problems.append((key, "signing_ca_cert and signing_ca_key together", "only one of them"))
        return problems
    if signing_ca_cert is None or signing_ca_key is None:
        return problems
    if not organization:
        problems.append(
            ("organization", "the O that signed certificates carry", "nothing (the key is missing)")
        )
    cas = _check_cas(signing_ca_cert, "signing_ca_cert", now, problems)
    for i, (below, above) in enumerate(itertools.pairwise(cas), start=1):
        try:
            below.verify_directly_issued_by(above)
        except (ValueError, TypeError, InvalidSignature):
            expected = "the signing CA first, then each CA above it (the chain sent to chargers)"
            found = f"certificate {i + 1} did not issue certificate {i}"
            problems.append(("signing_ca_cert", expected, found))
    key_pem = _read(signing_ca_key, "signing_ca_key", problems)
    if not cas or key_pem is None or not judge_key:
        return problems
    private = _signing_key(signing_ca_key, key_pem, passphrase, problems)
    if private is None:
        return problems
    ca_public = (
        cas[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key_public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if ca_public != key_public:
        found = f"{signing_ca_key} does not match {signing_ca_cert}"
        problems.append(("signing_ca_key", "the private key of signing_ca_cert", found))
    return problems


def signing_summary(signing_ca_cert: Path, passphrase: bytes | None) -> str:
    """One line for check-config on a signing CA that passed `check_client_certs`."""
    cas = x509.load_pem_x509_certificates(signing_ca_cert.read_bytes())
    above = f" + {len(cas) - 1} CA(s) above it in every chain" if len(cas) > 1 else ""
    key = "encrypted key, passphrase verified" if passphrase is not None else "unencrypted key"
    return f"{cas[0].subject.rfc4514_string()}{above}; {key}"


def _signing_key(
    path: Path, pem: bytes, passphrase: bytes | None, problems: list[tuple[str, str, str]]
) -> PrivateKeyTypes | None:
    # PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") or OpenSSL's traditional form.
    encrypted = b"BEGIN ENCRYPTED PRIVATE KEY" in pem or b"Proc-Type: 4,ENCRYPTED" in pem
    if encrypted and passphrase is None:
        found = f"{path} is encrypted and no passphrase is configured"
        hint = "set signing_ca_key_passphrase_file (or " + PASSPHRASE_ENV_HINT + ")"
        problems.append(("signing_ca_key", "a key the gateway can decrypt", f"{found}; {hint}"))
        return None
    if not encrypted and passphrase is not None:
        found = f"{path} is not encrypted, yet a passphrase is configured"
        problems.append(("signing_ca_key_passphrase_file", "an encrypted signing_ca_key", found))
        return None
    try:
        return serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        if encrypted:
            found = f"it does not decrypt {path} (wrong passphrase?)"
            problems.append(
                ("signing_ca_key_passphrase_file", "the passphrase of signing_ca_key", found)
            )
        else:
            problems.append(("signing_ca_key", "a PEM private key", f"{path}: {exc}"))
        return None


def _check_cas(
    path: Path, key: str, now: datetime, problems: list[tuple[str, str, str]]
) -> list[x509.Certificate]:
    pem = _read(path, key, problems)
    if pem is None:
        return []
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        problems.append((key, "PEM CA certificates", f"{path}: {exc}"))
        return []
    for cert in certs:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            end = cert.not_valid_after_utc.isoformat()
            problems.append((key, "CA certificates valid now", f"{cert.subject} ends {end}"))
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            problems.append((key, "CA certificates (basicConstraints CA:TRUE)", str(cert.subject)))
    return certs
