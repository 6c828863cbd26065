"""Property tests of the parsers of outside input that security profile 3 adds: the client
certificate header a proxy forwards, and the client certificate check itself."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpo_gateway.csms.clientcert import CertProblem, ClientCertPolicy
from cpo_gateway.csms.proxycert import (
    MAX_CERTS,
    CertHeaderError,
    is_trusted,
    parse_cert_chain,
    parse_cert_header,
    parse_networks,
)
from cpo_gateway.sim.pki import cert_pem, issue, make_ca, make_sub_ca
from tests.conftest import examples

CA, CA_KEY = make_ca("Property CA", "Example CPO")
LEAF, _ = issue(CA, CA_KEY, "CP-1", "Example CPO")
LEAF_PEM = cert_pem(LEAF).decode()
LEAF_DER = base64.b64decode("".join(LEAF_PEM.splitlines()[1:-1]))
POLICY = ClientCertPolicy([CA], "Example CPO")


@given(st.text(max_size=3000))
@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
def test_cert_header_either_parses_or_raises_our_error(value: str) -> None:
    try:
        der = parse_cert_header("X-Client-Cert", value)
    except CertHeaderError as exc:
        assert str(exc).startswith("X-Client-Cert: ")
    else:
        assert isinstance(der, bytes) and der


@given(st.binary(max_size=2000))
def test_any_der_bytes_are_a_verdict_never_a_crash(der: bytes) -> None:
    refused = POLICY.check(der, "CP-1")
    assert refused is not None  # random bytes are never this charger's certificate
    assert refused.problem in set(CertProblem)


@given(st.sampled_from(["pem", "escaped", "spaces", "b64", "quoted"]))
def test_every_accepted_encoding_gives_the_same_certificate(encoding: str) -> None:
    value = {
        "pem": LEAF_PEM,
        "escaped": quote(LEAF_PEM, safe=""),
        "spaces": LEAF_PEM.replace("\n", " "),
        "b64": base64.b64encode(LEAF_DER).decode(),
        "quoted": '"' + base64.b64encode(LEAF_DER).decode() + '"',
    }[encoding]
    assert parse_cert_header("X-Client-Cert", value) == LEAF_DER
    assert POLICY.check(LEAF_DER, "CP-1") is None


def test_trusted_proxies_match_addresses_and_blocks(tmp_path: Path) -> None:
    nets = parse_networks(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])
    assert is_trusted("127.0.0.1", nets) and is_trusted("10.9.8.7", nets)
    assert is_trusted("::ffff:10.1.1.1", nets) and is_trusted("fd00::5", nets)
    assert not is_trusted("127.0.0.2", nets) and not is_trusted("?", nets)
    assert not is_trusted("127.0.0.1", ())


SUB, SUB_KEY = make_sub_ca(CA, CA_KEY, "Property sub-CA", "Example CPO")
SUB_LEAF, _ = issue(SUB, SUB_KEY, "CP-1", "Example CPO")
SUB_DER = SUB.public_bytes(serialization.Encoding.DER)
SUB_LEAF_DER = SUB_LEAF.public_bytes(serialization.Encoding.DER)
CA_DER = CA.public_bytes(serialization.Encoding.DER)


@given(st.binary(max_size=4000))
@settings(max_examples=examples(300))
def test_any_base64_bytes_in_a_chain_header_parse_or_raise_our_error(data: bytes) -> None:
    """The HAProxy form: base64 of DER certificates joined; arbitrary bytes never crash."""
    try:
        ders = parse_cert_chain("X-Client-Cert-Chain", base64.b64encode(data).decode())
    except CertHeaderError as exc:
        assert str(exc).startswith("X-Client-Cert-Chain: ")
    else:
        assert 1 <= len(ders) <= MAX_CERTS and b"".join(ders) == data


@given(st.lists(st.sampled_from([LEAF_DER, SUB_DER, SUB_LEAF_DER]), min_size=1, max_size=6))
def test_joined_certificates_come_apart_in_order(ders: list[bytes]) -> None:
    value = base64.b64encode(b"".join(ders)).decode()
    pems = quote("".join(ssl.DER_cert_to_PEM_cert(d) for d in ders), safe="")
    if len(ders) > MAX_CERTS:
        for form in (value, pems):
            try:
                parse_cert_chain("X-Client-Cert", form)
            except CertHeaderError as exc:
                assert "more than" in str(exc)
            else:
                pytest.fail("a chain longer than MAX_CERTS is refused")
        return
    assert parse_cert_chain("X-Client-Cert", value) == ders
    assert parse_cert_chain("X-Client-Cert", pems) == ders


@given(st.lists(st.binary(max_size=600), max_size=3))
@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
def test_any_forwarded_chain_is_a_verdict_never_a_crash(intermediates: list[bytes]) -> None:
    refused = POLICY.check(SUB_LEAF_DER, "CP-1", intermediates)
    assert refused is not None  # random bytes never stand in for the sub-CA
    assert refused.problem in {CertProblem.UNREADABLE, CertProblem.UNTRUSTED}
    assert POLICY.check(SUB_LEAF_DER, "CP-1", [SUB_DER]) is None


@given(st.lists(st.binary(max_size=600), max_size=3))
@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
def test_any_tls_chain_is_a_verdict_never_a_crash(chain: list[bytes]) -> None:
    """What the TLS layer hands over (leaf first) is judged, whatever its bytes."""
    refused = POLICY.check_verified(chain, "CP-1")
    assert refused is not None and refused.problem in set(CertProblem)
    assert POLICY.check_verified([SUB_LEAF_DER, SUB_DER, CA_DER], "CP-1") is None
    assert POLICY.check_verified([SUB_LEAF_DER, SUB_DER, CA_DER], "CP-2") is not None
