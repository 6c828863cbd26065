"""Security profile 3: chargers authenticated by a client certificate bound to their id
(subject CN = charge point id, O = the CPO's organization), beside profile-2 chargers on the
same TLS port, and behind a trusted TLS-terminating proxy. Certificates are made here."""

from __future__ import annotations

import base64
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from cpo_gateway.config import load_config
from cpo_gateway.csms.passwords import hash_password
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import PemPair, SimPki, make_ca, write_pair
from cpo_gateway.tomlcheck import ConfigError
from tests.conftest import write_config
from tests.test_csms_support import OCPP16, basic, config, running, stations_with

P3 = "CP-BER-001"  # profile 3
P2 = "CP-MUC-DC1"  # profile 2, same port
ORG = "Example CPO"
PASSWORD = "correct-horse-battery-staple"


def stations(tmp_path: Path) -> Path:
    return stations_with(
        tmp_path,
        f'[[charger]]\nid = "{P3}"\nsecurity_profile = 3\n\n'
        f'[[charger]]\nid = "{P2}"\nsecurity_profile = 2\n'
        f'password_hash = "{hash_password(PASSWORD)}"\n',
    )


def tls_keys(pki: SimPki, *, proxies: str = "", server: bool = True) -> str:
    lines = ["[ocpp.tls]"]
    if server:
        lines += [f'cert_file = "{pki.server.cert}"', f'key_file = "{pki.server.key}"']
    lines += [f'client_ca_file = "{pki.ca.cert}"', f'organization = "{ORG}"']
    if proxies:
        lines.append(f"trusted_proxies = {proxies}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def pki(tmp_path: Path) -> SimPki:
    return SimPki(tmp_path / "pki", ORG)


def wss(url: str) -> str:
    return url.replace("ws://", "wss://", 1)


async def status_of(url: str, ctx: ssl.SSLContext | None, headers: dict[str, str]) -> int:
    """The HTTP status of a handshake: 101 when the upgrade went through."""
    try:
        async with connect(
            url, subprotocols=[OCPP16], ssl=ctx, additional_headers=headers, open_timeout=5
        ):
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)


async def metrics_of(base_url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(base_url + "/metrics") as resp:
        return await resp.text()


async def test_profile_3_charger_with_its_certificate_boots(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=tls_keys(pki))
    async with running(cfg, emp) as h:
        ctx = pki.client_context(pki.client(P3))
        async with SimCharger(P3, wss(h.ocpp_url), ssl=ctx, call_timeout=10) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"
            assert P3 in h.csms.connections


async def test_profile_2_charger_on_the_same_port_still_uses_basic_auth(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=tls_keys(pki))
    async with running(cfg, emp) as h:
        ctx = pki.client_context()  # no client certificate: CERT_OPTIONAL lets it through
        async with SimCharger(P2, wss(h.ocpp_url), password=PASSWORD, ssl=ctx) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"
        assert await status_of(f"{wss(h.ocpp_url)}/{P2}", ctx, {}) == 401


def _expired(pki: SimPki) -> PemPair:
    now = datetime.now(UTC)
    return pki.client(
        P3, not_before=now - timedelta(days=10), not_after=now - timedelta(days=1), stem="old"
    )


def _untrusted(pki: SimPki, tmp_path: Path) -> PemPair:
    """A certificate with the right names from a CA the gateway does not trust: OpenSSL
    refuses it in the TLS handshake already."""
    from cpo_gateway.sim.pki import issue

    other, other_key = make_ca("Someone else's CA", ORG)
    cert, key = issue(other, other_key, P3, ORG)
    return write_pair(tmp_path, "stranger", cert, key)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no certificate", "client_cert_missing"),
        ("basic auth instead", "client_cert_missing"),
        ("expired", "client_cert_expired"),
        ("wrong CN", "client_cert_wrong_cn"),
        ("wrong O", "client_cert_wrong_o"),
        ("no O", "client_cert_wrong_o"),
    ],
)
async def test_profile_3_refusals_are_logged_and_counted(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki, case: str, reason: str
) -> None:
    pairs = {
        "no certificate": None,
        "basic auth instead": None,
        "expired": _expired(pki),
        "wrong CN": pki.client(P3, cn=P2, stem="other-cn"),
        "wrong O": pki.client(P3, org="Other CPO", stem="other-o"),
        "no O": pki.client(P3, org="", stem="no-o"),
    }
    headers = {"Authorization": basic(P3, PASSWORD)} if case == "basic auth instead" else {}
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=tls_keys(pki))
    with structlog.testing.capture_logs() as events:
        async with running(cfg, emp) as h:
            ctx = pki.client_context(pairs[case])
            for _ in range(3):
                assert await status_of(f"{wss(h.ocpp_url)}/{P3}", ctx, headers) == 403
            assert not h.csms.connections
            metrics = await metrics_of(h.base_url)
    assert f'cpo_gateway_ocpp_refused_total{{reason="{reason}"}} 3.0' in metrics
    said = [e for e in events if e["event"] == f"security.{reason}"]
    assert len(said) == 1, said  # once per charger and reason per interval
    assert said[0]["charge_point_id"] == P3 and said[0]["source"] == "127.0.0.1"


async def test_untrusted_certificate_fails_the_tls_handshake_and_is_reported(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=tls_keys(pki))
    with structlog.testing.capture_logs() as events:
        async with running(cfg, emp) as h:
            ctx = pki.client_context(_untrusted(pki, tmp_path))
            for _ in range(3):
                # TLS 1.3: the server's alert arrives after the client's Finished, so the
                # client sees it as a failed TLS read or a connection lost before the answer.
                with pytest.raises((ssl.SSLError, ConnectionError, InvalidHandshake)) as info:
                    async with connect(
                        f"{wss(h.ocpp_url)}/{P3}", subprotocols=[OCPP16], ssl=ctx, open_timeout=5
                    ):
                        pass
                assert not isinstance(info.value, InvalidStatus)  # not even an HTTP answer
            assert not h.csms.connections
            metrics = await metrics_of(h.base_url)
            # A profile-2 charger on the same port is not affected.
            async with SimCharger(
                P2, wss(h.ocpp_url), password=PASSWORD, ssl=pki.client_context()
            ) as cp:
                await cp.connect()
                assert cp.boot_status == "Accepted"
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_untrusted"} 3.0' in metrics
    said = [e for e in events if e["event"] == "security.client_cert_untrusted"]
    assert len(said) == 1, said  # once per source and reason per interval
    assert said[0]["source"] == "127.0.0.1"
    assert said[0]["verify_code"] == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert "issuer" in said[0]["reason"]


def _der(pair: PemPair) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pair.cert.read_text())


@pytest.mark.parametrize("encoding", ["haproxy-base64-der", "nginx-escaped-pem"])
async def test_proxy_header_is_honoured_from_a_trusted_proxy(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki, encoding: str
) -> None:
    """The gateway listens without TLS behind a proxy at 127.0.0.1 that forwards the
    verified certificate; the same checks apply to it."""
    extra = tls_keys(pki, proxies='["127.0.0.1/32"]', server=False)
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=extra)

    def header(pair: PemPair) -> str:
        if encoding == "haproxy-base64-der":
            return base64.b64encode(_der(pair)).decode()
        return quote(pair.cert.read_text(), safe="")

    async with running(cfg, emp) as h:
        good = {"X-Client-Cert": header(pki.client(P3))}
        assert await status_of(f"{h.ocpp_url}/{P3}", None, good) == 101
        wrong_cn = {"X-Client-Cert": header(pki.client(P3, cn=P2, stem="cn"))}
        assert await status_of(f"{h.ocpp_url}/{P3}", None, wrong_cn) == 403
        assert await status_of(f"{h.ocpp_url}/{P3}", None, {}) == 403
        garbage = {"X-Client-Cert": "not a certificate"}
        assert await status_of(f"{h.ocpp_url}/{P3}", None, garbage) == 403
        metrics = await metrics_of(h.base_url)
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_wrong_cn"} 1.0' in metrics
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_missing"} 1.0' in metrics
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_unreadable"} 1.0' in metrics


async def test_proxy_header_from_an_untrusted_peer_is_ignored(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    forged = {"X-Client-Cert": base64.b64encode(_der(pki.client(P3))).decode()}
    proxies = '["10.1.2.3"]'  # not us: 127.0.0.1 is a plain peer
    (tmp_path / "plain").mkdir()
    (tmp_path / "tls").mkdir()
    plain = config(
        tmp_path / "plain",
        emp,
        stations=stations(tmp_path),
        extra=tls_keys(pki, proxies=proxies, server=False),
    )
    own_tls = config(
        tmp_path / "tls", emp, stations=stations(tmp_path), extra=tls_keys(pki, proxies=proxies)
    )
    with structlog.testing.capture_logs() as events:
        async with running(plain, emp) as h:
            # Over plain ws the header does not stand in for TLS ...
            for _ in range(2):
                assert await status_of(f"{h.ocpp_url}/{P3}", None, forged) == 403
            plain_metrics = await metrics_of(h.base_url)
        async with running(own_tls, emp) as h:
            # ... nor, over TLS, for the client certificate the charger did not present.
            ctx = pki.client_context()
            assert await status_of(f"{wss(h.ocpp_url)}/{P3}", ctx, forged) == 403
            tls_metrics = await metrics_of(h.base_url)
    assert "cpo_gateway_ocpp_proxy_headers_ignored_total 2.0" in plain_metrics
    assert 'cpo_gateway_ocpp_refused_total{reason="tls_required"} 2.0' in plain_metrics
    assert "cpo_gateway_ocpp_proxy_headers_ignored_total 1.0" in tls_metrics
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_missing"} 1.0' in tls_metrics
    ignored = [e for e in events if e["event"] == "security.proxy_header_ignored"]
    assert len(ignored) == 2, ignored  # once per gateway run (per source and interval)
    assert {e["source"] for e in ignored} == {"127.0.0.1"}


def test_check_config_requires_the_client_ca_and_organization_for_profile_3(
    tmp_path: Path, pki: SimPki
) -> None:
    tls = f'[ocpp.tls]\ncert_file = "{pki.server.cert}"\nkey_file = "{pki.server.key}"\n'
    path = write_config(tmp_path, stations=stations(tmp_path), extra=tls)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    text = str(info.value)
    assert "ocpp.tls.client_ca_file: expected a value because charger 'CP-BER-001'" in text
    assert "ocpp.tls.organization: expected a value" in text
    ok = write_config(tmp_path, stations=stations(tmp_path), extra=tls_keys(pki))
    certs = load_config(ok, {}).ocpp.client_certs
    assert certs.organization == ORG and certs.client_ca_file == pki.ca.cert


def test_check_config_names_bad_tls_keys(tmp_path: Path, pki: SimPki) -> None:
    extra = (
        "[ocpp.tls]\n"
        f'client_ca_file = "{pki.server.cert}"\n'  # a leaf, not a CA
        'trusted_proxies = ["10.0.0.0/33", "nonsense"]\n'
        f'signing_ca_cert = "{pki.ca.cert}"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, extra=extra), {})
    text = str(info.value)
    assert "ocpp.tls.client_ca_file: expected CA certificates (basicConstraints CA:TRUE)" in text
    assert (
        "ocpp.tls.trusted_proxies: expected IP addresses or CIDR blocks, found '10.0.0.0/33'"
        in text
    )
    assert "found 'nonsense'" in text
    assert "ocpp.tls.signing_ca_key: expected signing_ca_cert and signing_ca_key together" in text
    # Without trusted proxies the gateway needs its own certificate to listen with TLS.
    alone = write_config(tmp_path, extra=f'[ocpp.tls]\norganization = "{ORG}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(alone, {})
    assert "ocpp.tls.cert_file: expected cert_file and key_file together" in str(info.value)
