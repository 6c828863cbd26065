"""Security profile 3: the client certificate a charger presents, held to its identity.

Split of the work: OpenSSL verifies the signature chain during the TLS handshake (the
context asks for a certificate with CERT_OPTIONAL, so profile-2 chargers on the same port
still connect without one). It does not check validity dates (X509_V_FLAG_NO_CHECK_TIME,
see `server_context`): an expired certificate would otherwise fail as an anonymous TLS
alert, before the request names the charger, and the operator would see nothing. This
module then checks, for the charger the request path names:

- the leaf is directly issued by a certificate of `client_ca_file` (which therefore holds
  the issuing CA and any sub-CA), and it and its issuer are valid now;
- its subject O equals `[ocpp.tls] organization` and its CN equals the charge point id
  (OCPP 2.0.1 A00.FR.404/405, the 1.6 security whitepaper alike). Without the CN check any
  certified charger could connect as any other.

The same checks apply to a certificate a trusted TLS-terminating proxy forwards in a header
(proxycert.py): there OpenSSL saw nothing, so the issuer check here is the chain check.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (not exported by the ssl module): dates are checked
# here, per charger, with a reason in the log.
NO_CHECK_TIME = 0x200000


class CertProblem(StrEnum):
    """Why a profile-3 charger's certificate is refused; the values are refusal reasons."""

    MISSING = "client_cert_missing"
    UNREADABLE = "client_cert_unreadable"
    EXPIRED = "client_cert_expired"
    UNTRUSTED = "client_cert_untrusted"
    WRONG_CN = "client_cert_wrong_cn"
    WRONG_O = "client_cert_wrong_o"


@dataclass(frozen=True, slots=True)
class CertRefused:
    problem: CertProblem
    detail: str


def load_ca_bundle(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; ValueError when it holds none."""
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    if not certs:
        raise ValueError(f"{path} holds no PEM certificate")
    return certs


def subject_values(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


class ClientCertPolicy:
    """Checks one charger's client certificate (DER) against the operator's CA and name."""

    __slots__ = ("_cas", "_clock", "organization")

    def __init__(
        self,
        cas: list[x509.Certificate],
        organization: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._cas = cas
        self.organization = organization
        self._clock = clock

    def check(self, der: bytes | None, charge_point_id: str) -> CertRefused | None:
        """None when `der` may speak for `charge_point_id`; else why not."""
        if not der:
            return CertRefused(CertProblem.MISSING, "no client certificate presented")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            return CertRefused(CertProblem.UNREADABLE, f"not an X.509 certificate ({exc})")
        now = self._clock()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return CertRefused(CertProblem.EXPIRED, _window(cert))
        issuer = self._issuer(cert)
        if issuer is None:
            return CertRefused(CertProblem.UNTRUSTED, "not issued by a CA of client_ca_file")
        if not issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc:
            return CertRefused(CertProblem.EXPIRED, "issuing CA " + _window(issuer))
        orgs = subject_values(cert, NameOID.ORGANIZATION_NAME)
        if orgs != [self.organization]:
            return CertRefused(CertProblem.WRONG_O, f"subject O is {_show(orgs)}")
        names = subject_values(cert, NameOID.COMMON_NAME)
        if names != [charge_point_id]:
            return CertRefused(CertProblem.WRONG_CN, f"subject CN is {_show(names)}")
        return None

    def _issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        for ca in self._cas:
            if ca.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return ca
        return None


def server_context(cert_file: Path, key_file: Path, client_ca_file: Path | None) -> ssl.SSLContext:
    """The OCPP listener's TLS context; with a client CA it asks for (but does not require)
    a client certificate, so profiles 2 and 3 share the port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # the OCPP server raises it to TLS >= 1.2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(client_ca_file))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags = ctx.verify_flags | NO_CHECK_TIME  # dates: ClientCertPolicy.check
    return ctx


def _window(cert: x509.Certificate) -> str:
    start = cert.not_valid_before_utc.isoformat()
    end = cert.not_valid_after_utc.isoformat()
    return f"valid from {start} to {end}"


def _show(values: list[str]) -> str:
    if not values:
        return "missing"
    return ", ".join(repr(v[:64]) for v in values)
