"""Security profile 3: the client certificate a charger presents, held to its identity.

A certificate reaches us two ways, and both end in the same judgment (`ClientCertPolicy`):

- over our own TLS: OpenSSL verifies the signature chain during the handshake (the context
  asks for a certificate with CERT_OPTIONAL, so profile-2 chargers on the same port still
  connect without one; a chain it refuses is reported by tlsgate.py). It does not check
  validity dates (X509_V_FLAG_NO_CHECK_TIME, see `server_context`): an expired certificate
  would otherwise fail as an anonymous TLS alert, before the request names the charger.
  `check_verified` takes the chain OpenSSL built (leaf first, up to a certificate of
  `client_ca_file`) and judges dates and names;
- from a trusted TLS-terminating proxy, in a header (proxycert.py): OpenSSL saw nothing, so
  `check` builds and verifies the chain here, with `cryptography.x509.verification`, from the
  leaf, the sub-CAs the proxy forwarded and those of `client_ca_file`.

Every certificate of `client_ca_file` is a trust anchor (OpenSSL: X509_V_FLAG_PARTIAL_CHAIN):
an operator may trust its own sub-CA without trusting every sibling under a shared root. A
charger issued by a sub-CA sends leaf + sub-CA, or the file holds the sub-CA. Then, for the
charger the request path names: every certificate of the chain is valid now, the leaf's
subject O equals `[ocpp.tls] organization` and its CN equals the charge point id (OCPP 2.0.1
A00.FR.404/405, the 1.6 security whitepaper alike). Without the CN check any certified
charger could connect as any other.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

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
    # What the log may say of the certificate: subject_cn, subject_o, issuer, sha256.
    seen: dict[str, str] = field(default_factory=dict)


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

    __slots__ = ("_cas", "_clock", "_ee_policy", "_store", "organization")

    def __init__(
        self,
        cas: list[x509.Certificate],
        organization: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._cas = cas
        self._store = Store(cas)
        self.organization = organization
        self._clock = clock
        # The Web PKI profile, except that a charger certificate names its charger in the
        # subject CN and needs no subjectAltName (OCPP asks for none).
        self._ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
        )

    def check(
        self, der: bytes | None, charge_point_id: str, intermediates: Sequence[bytes] = ()
    ) -> CertRefused | None:
        """None when `der` may speak for `charge_point_id`; else why not. The chain is built
        here from `intermediates` (what a proxy forwarded) and `client_ca_file`."""
        leaf = _load(der)
        if isinstance(leaf, CertRefused):
            return leaf
        extra: list[x509.Certificate] = []
        for item in intermediates:
            loaded = _load(item)
            if isinstance(loaded, CertRefused):
                detail = "chain: " + loaded.detail
                return CertRefused(CertProblem.UNREADABLE, detail, describe(leaf))
            extra.append(loaded)
        expired = self._dates(leaf)
        if expired is not None:
            return expired
        chain = self._verify(leaf, extra)
        if isinstance(chain, CertRefused):
            return chain
        return self._judge(chain, charge_point_id)

    def check_verified(self, chain: Sequence[bytes], charge_point_id: str) -> CertRefused | None:
        """Like `check`, for a chain (leaf first) whose signatures OpenSSL verified up to a
        certificate of `client_ca_file`; dates and names are judged here."""
        if len(chain) < 2:  # no chain from the TLS layer: build it here
            return self.check(chain[0] if chain else None, charge_point_id)
        certs: list[x509.Certificate] = []
        for item in chain:
            loaded = _load(item)
            if isinstance(loaded, CertRefused):
                return loaded
            certs.append(loaded)
        expired = self._dates(certs[0])
        return expired if expired is not None else self._judge(certs, charge_point_id)

    def _judge(self, chain: list[x509.Certificate], charge_point_id: str) -> CertRefused | None:
        leaf = chain[0]
        seen = describe(leaf)
        now = self._clock()
        for ca in chain[1:]:
            if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
                detail = f"issuing CA {ca.subject.rfc4514_string()[:120]} {_window(ca)}"
                return CertRefused(CertProblem.EXPIRED, detail, seen)
        orgs = subject_values(leaf, NameOID.ORGANIZATION_NAME)
        if orgs != [self.organization]:
            return CertRefused(CertProblem.WRONG_O, f"subject O is {_show(orgs)}", seen)
        names = subject_values(leaf, NameOID.COMMON_NAME)
        if names != [charge_point_id]:
            return CertRefused(CertProblem.WRONG_CN, f"subject CN is {_show(names)}", seen)
        return None

    def _dates(self, leaf: x509.Certificate) -> CertRefused | None:
        now = self._clock()
        if leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return None
        return CertRefused(CertProblem.EXPIRED, _window(leaf), describe(leaf))

    def _verify(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate]
    ) -> list[x509.Certificate] | CertRefused:
        """The chain from `leaf` to a certificate of client_ca_file. Checked at a time the
        leaf is valid but a CA may not be, so that `_judge` can say which CA expired rather
        than the verifier's 'not valid at validation time'."""
        now = self._clock()
        problem = ""
        for at in (now, leaf.not_valid_before_utc):
            try:
                verified = self._verifier(at).verify(leaf, intermediates)
            except (VerificationError, ValueError, TypeError) as exc:
                problem = problem or str(exc)
                continue
            return list(verified.chain)
        detail = f"no chain to a CA of client_ca_file ({problem[:200]})"
        return CertRefused(CertProblem.UNTRUSTED, detail, describe(leaf))

    def _verifier(self, at: datetime) -> ClientVerifier:
        return (
            PolicyBuilder()
            .store(self._store)
            .time(at)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=self._ee_policy
            )
            .build_client_verifier()
        )


def describe(cert: x509.Certificate) -> dict[str, str]:
    """Subject CN and O, issuer and SHA-256 fingerprint, bounded, for the log."""
    return {
        "subject_cn": ", ".join(subject_values(cert, NameOID.COMMON_NAME))[:64],
        "subject_o": ", ".join(subject_values(cert, NameOID.ORGANIZATION_NAME))[:64],
        "issuer": cert.issuer.rfc4514_string()[:160],
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def verified_chain(tls: ssl.SSLObject) -> list[bytes]:
    """The DER chain OpenSSL verified for the peer, leaf first; only the leaf (or nothing)
    where the ssl module does not tell. Python 3.13 names it `get_verified_chain()`; 3.10 to
    3.12 have the same method on the object inside."""
    getter = getattr(tls, "get_verified_chain", None)
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_verified_chain", None)
    chain = getter() if getter is not None else None
    if chain:
        # bytes (3.13), or certificate objects whose public_bytes() is PEM by default
        return [
            c if isinstance(c, bytes) else ssl.PEM_cert_to_DER_cert(c.public_bytes()) for c in chain
        ]
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _load(der: bytes | None) -> x509.Certificate | CertRefused:
    if not der:
        return CertRefused(CertProblem.MISSING, "no client certificate presented")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        return CertRefused(CertProblem.UNREADABLE, f"not an X.509 certificate ({exc})")


def server_context(cert_file: Path, key_file: Path, client_ca_file: Path | None) -> ssl.SSLContext:
    """The OCPP listener's TLS context; with a client CA it asks for (but does not require)
    a client certificate, so profiles 2 and 3 share the port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # the OCPP server raises it to TLS >= 1.2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(client_ca_file))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        # Dates: ClientCertPolicy; every certificate of the file is an anchor (a sub-CA too).
        ctx.verify_flags = ctx.verify_flags | NO_CHECK_TIME | ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def _window(cert: x509.Certificate) -> str:
    start = cert.not_valid_before_utc.isoformat()
    end = cert.not_valid_after_utc.isoformat()
    return f"valid from {start} to {end}"


def _show(values: list[str]) -> str:
    if not values:
        return "missing"
    return ", ".join(repr(v[:64]) for v in values)
