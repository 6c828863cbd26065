"""A throwaway PKI for simulated chargers: a CA, the gateway's server certificate and one
client certificate per charger, written as PEM files.

Used by the tests and the profile-3 benchmark (and handy to try profile 3 by hand); never by
the gateway itself, which only reads the files an operator configures. EC P-256 keys: fast
to make and to verify, and what charger vendors commonly ship.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey
DEFAULT_ORG = "Example CPO"


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def name(cn: str, org: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org is not None:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_ca(cn: str, org: str = DEFAULT_ORG, *, days: int = 30) -> tuple[x509.Certificate, Key]:
    """A self-signed root CA that may issue one level of sub-CAs."""
    key = new_key()
    return _ca(name(cn, org), key, None, key, path_length=1, days=days), key


def make_sub_ca(
    issuer: x509.Certificate,
    issuer_key: Key,
    cn: str,
    org: str = DEFAULT_ORG,
    *,
    days: int = 30,
    not_after: datetime | None = None,
) -> tuple[x509.Certificate, Key]:
    """A sub-CA under `issuer` that issues leaves only (pathLen 0)."""
    key = new_key()
    return _ca(
        name(cn, org), key, issuer, issuer_key, path_length=0, days=days, not_after=not_after
    ), key


def _ca(
    subject: x509.Name,
    key: Key,
    issuer: x509.Certificate | None,
    issuer_key: Key,
    *,
    path_length: int,
    days: int,
    not_after: datetime | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(not_after or now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def issue(
    ca: x509.Certificate,
    ca_key: Key,
    cn: str,
    org: str | None = DEFAULT_ORG,
    *,
    key: Key | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    server_ip: str | None = None,
) -> tuple[x509.Certificate, Key]:
    """A leaf signed by `ca`: a client certificate, or a server one for `server_ip`."""
    key = key or new_key()
    now = datetime.now(UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_ip else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn, org))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=5))
        .not_valid_after(not_after or now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server_ip:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class PemPair:
    cert: Path
    key: Path


def write_pair(
    directory: Path,
    stem: str,
    cert: x509.Certificate,
    key: Key,
    chain: tuple[x509.Certificate, ...] = (),
) -> PemPair:
    """`stem`.pem (the certificate, then `chain`: what a charger with a sub-CA presents)
    and `stem`.key."""
    pair = PemPair(directory / f"{stem}.pem", directory / f"{stem}.key")
    pair.cert.write_bytes(b"".join(cert_pem(c) for c in (cert, *chain)))
    pair.key.write_bytes(key_pem(key))
    pair.key.chmod(0o600)
    return pair


class SimPki:
    """A CA, a server certificate for 127.0.0.1 and client certificates, under `directory`.

    `ca` (ca.pem / ca.key) issues everything: point `[ocpp.tls] client_ca_file` and the
    chargers' trust store at ca.pem, `cert_file` / `key_file` at `server`."""

    def __init__(self, directory: Path, organization: str = DEFAULT_ORG) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.organization = organization
        self.ca_cert, self.ca_key = make_ca("Sim charger CA", organization)
        self.ca = write_pair(directory, "ca", self.ca_cert, self.ca_key)
        server, server_key = issue(
            self.ca_cert, self.ca_key, "127.0.0.1", organization, server_ip="127.0.0.1"
        )
        self.server = write_pair(directory, "server", server, server_key)

    def client(
        self,
        cp_id: str,
        *,
        cn: str | None = None,
        org: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        stem: str | None = None,
    ) -> PemPair:
        """A client certificate for charger `cp_id` (CN and O overridable, to test refusals)."""
        cert, key = issue(
            self.ca_cert,
            self.ca_key,
            cn if cn is not None else cp_id,
            org if org is not None else self.organization,
            not_before=not_before,
            not_after=not_after,
        )
        return write_pair(self.directory, stem or f"client-{cp_id}", cert, key)

    def client_context(self, pair: PemPair | None = None) -> ssl.SSLContext:
        """A charger's TLS context: trusts the CA; presents `pair` when given."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        if pair is not None:
            ctx.load_cert_chain(pair.cert, pair.key)
        return ctx
