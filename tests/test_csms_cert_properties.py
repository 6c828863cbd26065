"""Property tests of the parsers of outside input that security profile 3 adds: the client
certificate header a proxy forwards, and the client certificate check itself."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpo_gateway.csms.clientcert import CertProblem, ClientCertPolicy
from cpo_gateway.csms.proxycert import (
    CertHeaderError,
    is_trusted,
    parse_cert_header,
    parse_networks,
)
from cpo_gateway.sim.pki import cert_pem, issue, make_ca

CA, CA_KEY = make_ca("Property CA", "Example CPO")
LEAF, _ = issue(CA, CA_KEY, "CP-1", "Example CPO")
LEAF_PEM = cert_pem(LEAF).decode()
LEAF_DER = base64.b64decode("".join(LEAF_PEM.splitlines()[1:-1]))
POLICY = ClientCertPolicy([CA], "Example CPO")


@given(st.text(max_size=3000))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
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
