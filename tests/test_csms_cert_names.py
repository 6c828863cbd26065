"""The names a profile-3 certificate must carry, tried the way a charger (or a forger with a
certificate of the operator's CA) would: CN and O compared exactly, whatever the string type
of the attribute, and refused when repeated, in another case or with bytes added. Both ways
a certificate reaches the judgment: the proxy's (the chain built here) and our own TLS's
(the chain OpenSSL verified)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cpo_gateway.csms.clientcert import CertProblem, ClientCertPolicy
from cpo_gateway.sim.pki import make_ca, new_key

CP = "CP-BER-001"
ORG = "Example CPO"
CA, CA_KEY = make_ca("Operator CA", ORG)
POLICY = ClientCertPolicy([CA], ORG)
CN, ORG_OID = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME


def _leaf(subject: x509.Name) -> bytes:
    now = datetime.now(UTC)
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(CA.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()),
            critical=False,
        )
        .sign(CA_KEY, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _attrs(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


def _verdicts(der: bytes) -> set[CertProblem | None]:
    """The verdict of each path; a set of one when both agree."""
    ca_der = CA.public_bytes(serialization.Encoding.DER)
    by_proxy = POLICY.check(der, CP)
    by_tls = POLICY.check_verified([der, ca_der], CP)
    return {None if v is None else v.problem for v in (by_proxy, by_tls)}


@pytest.mark.parametrize(
    "subject",
    [
        _attrs((ORG_OID, ORG), (CN, CP)),
        _attrs((CN, CP), (ORG_OID, ORG)),  # order of the attributes
        x509.Name(
            [
                x509.NameAttribute(ORG_OID, ORG, x509.name._ASN1Type.PrintableString),  # noqa: SLF001
                x509.NameAttribute(CN, CP, x509.name._ASN1Type.PrintableString),  # noqa: SLF001
            ]
        ),
        x509.Name(
            [
                x509.NameAttribute(ORG_OID, ORG, x509.name._ASN1Type.UTF8String),  # noqa: SLF001
                x509.NameAttribute(CN, CP, x509.name._ASN1Type.UTF8String),  # noqa: SLF001
            ]
        ),
        x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(ORG_OID, ORG),
                                                   x509.NameAttribute(CN, CP)])]),
    ],
    ids=["o-cn", "cn-o", "printable", "utf8", "one-rdn"],
)  # fmt: skip
def test_the_chargers_own_names_pass_in_any_encoding(subject: x509.Name) -> None:
    assert _verdicts(_leaf(subject)) == {None}


@pytest.mark.parametrize(
    ("subject", "problem"),
    [
        (_attrs((ORG_OID, ORG), (CN, CP.lower())), CertProblem.WRONG_CN),
        (_attrs((ORG_OID, ORG), (CN, CP + " ")), CertProblem.WRONG_CN),
        (_attrs((ORG_OID, ORG), (CN, CP + "\x00")), CertProblem.WRONG_CN),
        (_attrs((ORG_OID, ORG), (CN, "CP-HH-001"), (CN, CP)), CertProblem.WRONG_CN),
        (_attrs((ORG_OID, ORG), (CN, CP), (CN, "CP-HH-001")), CertProblem.WRONG_CN),
        (_attrs((ORG_OID, ORG)), CertProblem.WRONG_CN),
        (_attrs((ORG_OID, ORG.upper()), (CN, CP)), CertProblem.WRONG_O),
        (_attrs((ORG_OID, "Other CPO"), (ORG_OID, ORG), (CN, CP)), CertProblem.WRONG_O),
        (_attrs((CN, CP)), CertProblem.WRONG_O),
        (_attrs((NameOID.ORGANIZATIONAL_UNIT_NAME, ORG), (CN, CP)), CertProblem.WRONG_O),
    ],
    ids=[
        "cn-lower", "cn-space", "cn-nul", "two-cn-other-first", "two-cn-ours-first", "no-cn",
        "o-upper", "two-o", "no-o", "ou-not-o",
    ],
)  # fmt: skip
def test_names_that_are_not_exactly_the_chargers_are_refused(
    subject: x509.Name, problem: CertProblem
) -> None:
    assert _verdicts(_leaf(subject)) == {problem}
