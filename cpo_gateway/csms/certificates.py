"""Signing the certificate requests (CSRs) chargers send, with the operator's CA.

OCPP 1.6 (security extension) and 2.0.1 share the flow: the charger sends SignCertificate
with a PEM CSR, the central system answers Accepted or Rejected at once, and sends the signed
chain later in CertificateSigned (`certificateChain`, PEM). This module is the part the two
versions share and knows neither: `CertificateSigner.sign(csr_pem, charge_point_id)` returns
the PEM chain or raises CsrRejected with the reason. A version's handler answers
Accepted/Rejected from that and sends the chain after its reply.

What is signed is what profile 3 will accept (clientcert.py): subject O = the organization,
CN = the charge point id (a charger cannot ask for another's name), a sound key, a valid CSR
signature. The CA comes from `[ocpp.tls] signing_ca_cert` / `signing_ca_key` (encrypted
with the passphrase of `signing_ca_key_passphrase_file`, if it is); the gateway never makes
one of its own. The signing CA may be a sub-CA: `signing_ca_cert` holds it first, then the
CAs above it, and CertificateSigned carries the new certificate followed by all of them, in
that order (OCPP 2.0.1 CertificateSigned: the chain "starting from the leaf certificate").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAX_CSR = 16 * 1024  # OCPP 1.6 and 2.0.1: csr is at most 5500 characters
DEFAULT_VALIDITY_DAYS = 365
_SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class CsrRejected(ValueError):
    """A CSR the gateway will not sign; the message says why (for the log)."""


@dataclass(frozen=True, slots=True)
class SignedCertificate:
    chain_pem: str  # the new certificate, then the CA(s): the certificateChain to send
    serial: int
    not_after: datetime
    sha256: str  # hex fingerprint of the new certificate


class CertificateSigner:
    """Signs charger CSRs with the operator CA; pure apart from reading its files once."""

    def __init__(
        self,
        ca_cert: x509.Certificate,
        ca_key: _SigningKey,
        organization: str,
        *,
        validity_days: int = DEFAULT_VALIDITY_DAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        above: Sequence[x509.Certificate] = (),
    ) -> None:
        """`above`: the CAs over a sub-CA `ca_cert`, sent after it in every chain."""
        self._ca = ca_cert
        self._chain = (ca_cert, *above)
        self._chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self._chain)
        self._ca_ends = min(c.not_valid_after_utc for c in self._chain)
        self._key = ca_key
        self.organization = organization
        self._validity = timedelta(days=validity_days)
        self._clock = clock

    @classmethod
    def from_files(
        cls,
        cert_file: Path,
        key_file: Path,
        organization: str,
        *,
        passphrase: bytes | None = None,
    ) -> CertificateSigner:
        """The files config.py checked (tlsfiles.check_client_certs): a wrong passphrase is
        a configuration error at start, never a surprise at the first CSR."""
        ca, *above = x509.load_pem_x509_certificates(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=passphrase)
        if not isinstance(
            key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise ValueError(f"{key_file}: an EC, RSA or Ed25519 key is needed to sign")
        return cls(ca, key, organization, above=above)

    def sign(self, csr_pem: str, charge_point_id: str) -> SignedCertificate:
        csr = read_csr(csr_pem)
        orgs = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        if orgs != [self.organization]:
            raise CsrRejected(f"subject O is {orgs or 'missing'}, expected {self.organization!r}")
        names = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [charge_point_id]:
            raise CsrRejected(f"subject CN is {names or 'missing'}, expected {charge_point_id!r}")
        public = csr.public_key()
        if isinstance(public, rsa.RSAPublicKey) and public.key_size < 2048:
            raise CsrRejected(f"RSA key of {public.key_size} bits, expected at least 2048")
        if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.key_size < 256:
            raise CsrRejected(f"EC key on {public.curve.name}, expected 256 bits or more")
        if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise CsrRejected(f"a {type(public).__name__} key, expected RSA or EC")
        now = self._clock()
        not_after = min(now + self._validity, self._ca_ends)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                x509.NameAttribute(NameOID.COMMON_NAME, charge_point_id),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))  # chargers' clocks drift
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(
                self._key,
                None if isinstance(self._key, ed25519.Ed25519PrivateKey) else hashes.SHA256(),
            )
        )
        pem = cert.public_bytes(serialization.Encoding.PEM) + self._chain_pem
        return SignedCertificate(
            pem.decode("ascii"),
            cert.serial_number,
            cert.not_valid_after_utc,
            cert.fingerprint(hashes.SHA256()).hex(),
        )


def read_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """A PEM CSR from a charger, with a valid self-signature; CsrRejected otherwise."""
    if not isinstance(csr_pem, str) or not csr_pem.strip():
        raise CsrRejected("csr: expected a PEM certificate signing request")
    if len(csr_pem) > MAX_CSR:
        raise CsrRejected(f"csr: longer than {MAX_CSR} characters")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("utf-8", "surrogateescape"))
    except (ValueError, UnicodeError) as exc:
        raise CsrRejected(f"csr: not a PEM certificate signing request ({exc})") from exc
    try:
        valid = csr.is_signature_valid
        csr.public_key()
    except (ValueError, TypeError) as exc:  # an unsupported key or algorithm
        raise CsrRejected(f"csr: unreadable key or signature ({exc})") from exc
    if not valid:
        raise CsrRejected("csr: the signature does not match its key")
    return csr
