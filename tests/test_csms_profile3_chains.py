"""Security profile 3 with sub-CAs (charger certificates issued under the trusted root, or a
trusted sub-CA alone), over the gateway's own TLS and behind a trusted proxy; and TLS
handshakes that fail, which are refusals like any other: logged by source and counted.
Certificates and chains are made here with `cryptography` (sim/pki.py)."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import PemPair, SimPki, cert_pem, issue, make_ca, make_sub_ca
from cpo_gateway.sim.pki import write_pair as write_pem
from tests.test_csms_profile3 import (
    ORG,
    P2,
    P3,
    PASSWORD,
    metrics_of,
    stations,
    status_of,
    wss,
)
from tests.test_csms_support import OCPP16, config, eventually, running, tls11_client


class Chain:
    """SimPki's CA as the root, two sub-CAs under it, and files of each."""

    def __init__(self, pki: SimPki, *, sub_not_after: datetime | None = None) -> None:
        self.pki = pki
        self.sub, self.sub_key = make_sub_ca(
            pki.ca_cert, pki.ca_key, "Charger sub-CA", ORG, not_after=sub_not_after
        )
        self.sibling, self.sibling_key = make_sub_ca(pki.ca_cert, pki.ca_key, "Other sub-CA", ORG)
        self.sub_file = self.bundle("sub-ca.pem", self.sub)
        self.root_and_sub_file = self.bundle("root-and-sub.pem", pki.ca_cert, self.sub)

    def bundle(self, file_name: str, *certs: x509.Certificate) -> Path:
        path = self.pki.directory / file_name
        path.write_bytes(b"".join(cert_pem(c) for c in certs))
        return path

    def leaf(
        self, stem: str, *, cn: str = P3, sibling: bool = False, with_chain: bool = True
    ) -> tuple[PemPair, x509.Certificate]:
        ca, ca_key = (self.sibling, self.sibling_key) if sibling else (self.sub, self.sub_key)
        cert, key = issue(ca, ca_key, cn, ORG)
        chain = (ca,) if with_chain else ()
        return write_pem(self.pki.directory, stem, cert, key, chain), cert


def tls_keys(pki: SimPki, client_ca: Path, *, proxies: str = "", server: bool = True) -> str:
    lines = ["[ocpp.tls]"]
    if server:
        lines += [f'cert_file = "{pki.server.cert}"', f'key_file = "{pki.server.key}"']
    lines += [f'client_ca_file = "{client_ca}"', f'organization = "{ORG}"']
    if proxies:
        lines.append(f"trusted_proxies = {proxies}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def pki(tmp_path: Path) -> SimPki:
    return SimPki(tmp_path / "pki", ORG)


def sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def refused(metrics: str) -> dict[str, float]:
    """The refusal counters of a /metrics scrape that are not zero, by reason."""
    prefix = 'cpo_gateway_ocpp_refused_total{reason="'
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(prefix):
            reason, value = line[len(prefix) :].split('"} ')
            if float(value):
                out[reason] = float(value)
    return out


def blocking_tls_client(port: int, ctx: ssl.SSLContext) -> None:
    """A TLS client on a plain socket: like a charger's TLS stack, it sends its alert before
    closing (asyncio's client drops it and just closes). It then reads until the server
    closes: closing with unread data would send a RST, which can overtake the alert."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1", do_handshake_on_connect=False) as tls:
        try:
            tls.do_handshake()
        finally:
            tls.shutdown(socket.SHUT_WR)
            while socket.socket.recv(tls, 4096):
                pass


async def tls_refused(url: str, ctx: ssl.SSLContext) -> BaseException:
    """The handshake fails below HTTP (TLS 1.3: the server's alert may come after the
    client's Finished, as a failed read or a lost connection)."""
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidHandshake)) as info:
        async with connect(url, subprotocols=[OCPP16], ssl=ctx, open_timeout=5):
            pass
    assert not isinstance(info.value, InvalidStatus), info.value
    return info.value


async def test_a_charger_sending_leaf_and_sub_ca_is_accepted_with_only_the_root_trusted(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    chain = Chain(pki)
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=tls_keys(pki, pki.ca.cert))
    with structlog.testing.capture_logs() as events:
        async with running(cfg, emp) as h:
            with_sub, _ = chain.leaf("with-sub")
            ctx = pki.client_context(with_sub)
            async with SimCharger(P3, wss(h.ocpp_url), ssl=ctx, call_timeout=10) as cp:
                await cp.connect()
                assert cp.boot_status == "Accepted"
            # Without its sub-CA the leaf has no chain to the root: OpenSSL refuses it.
            alone, _ = chain.leaf("alone", with_chain=False)
            await tls_refused(f"{wss(h.ocpp_url)}/{P3}", pki.client_context(alone))
            # A wrong CN under the sub-CA is judged after the handshake, with its details.
            wrong, wrong_cert = chain.leaf("wrong-cn", cn=P2)
            url = f"{wss(h.ocpp_url)}/{P3}"
            assert await status_of(url, pki.client_context(wrong), {}) == 403
            metrics = await metrics_of(h.base_url)
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_untrusted"} 1.0' in metrics
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_wrong_cn"} 1.0' in metrics
    (said,) = [e for e in events if e["event"] == "security.client_cert_wrong_cn"]
    assert said["subject_cn"] == P2 and said["subject_o"] == ORG
    assert said["issuer"] == chain.sub.subject.rfc4514_string()
    assert said["sha256"] == sha256(wrong_cert)


async def test_a_trusted_sub_ca_alone_admits_its_leaves_but_not_its_siblings(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    chain = Chain(pki)
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=tls_keys(pki, chain.sub_file))
    with structlog.testing.capture_logs() as events:
        async with running(cfg, emp) as h:
            url = f"{wss(h.ocpp_url)}/{P3}"
            alone, _ = chain.leaf("alone", with_chain=False)
            assert await status_of(url, pki.client_context(alone), {}) == 101
            sibling, _ = chain.leaf("sibling", sibling=True)  # the same root, another sub-CA
            await tls_refused(url, pki.client_context(sibling))
            await tls_refused(url, pki.client_context(sibling))
            metrics = await metrics_of(h.base_url)
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_untrusted"} 2.0' in metrics
    said = [e for e in events if e["event"] == "security.client_cert_untrusted"]
    assert len(said) == 1 and said[0]["source"] == "127.0.0.1", said


async def test_an_expired_sub_ca_is_refused_as_expired_naming_the_charger(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    chain = Chain(pki, sub_not_after=datetime.now(UTC) - timedelta(minutes=1))
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=tls_keys(pki, pki.ca.cert))
    with structlog.testing.capture_logs() as events:
        async with running(cfg, emp) as h:
            pair, leaf = chain.leaf("under-expired")
            assert await status_of(f"{wss(h.ocpp_url)}/{P3}", pki.client_context(pair), {}) == 403
            metrics = await metrics_of(h.base_url)
    assert 'cpo_gateway_ocpp_refused_total{reason="client_cert_expired"} 1.0' in metrics
    (said,) = [e for e in events if e["event"] == "security.client_cert_expired"]
    assert said["charge_point_id"] == P3 and said["reason"].startswith(
        "issuing CA CN=Charger sub-CA"
    )
    assert said["sha256"] == sha256(leaf)


def _b64_leaf(leaf: x509.Certificate) -> str:
    return base64.b64encode(der(leaf)).decode()


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        # HAProxy: %[ssl_c_der,base64] and %[ssl_c_chain_der,base64] (the sub-CAs, DER joined)
        ("root", "haproxy leaf + chain header", 101),
        # A proxy that puts leaf + sub-CA PEMs in the one header (URL-escaped)
        ("root", "pem leaf and sub in one header", 101),
        # nginx: $ssl_client_escaped_cert is the leaf alone; the sub-CA is in client_ca_file
        ("root and sub", "nginx leaf only", 101),
        ("root", "nginx leaf only", 403),
        ("sub", "haproxy sibling leaf + its chain", 403),
    ],
)
async def test_sub_ca_chains_behind_a_trusted_proxy(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki, trusted: str, forwarded: str, expected: int
) -> None:
    chain = Chain(pki)
    ca_file = {"root": pki.ca.cert, "root and sub": chain.root_and_sub_file, "sub": chain.sub_file}
    extra = tls_keys(pki, ca_file[trusted], proxies='["127.0.0.1/32"]', server=False)
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=extra)
    _, leaf = chain.leaf("leaf", sibling=forwarded.startswith("haproxy sibling"))
    headers = {
        "haproxy leaf + chain header": {
            "X-Client-Cert": _b64_leaf(leaf),
            "X-Client-Cert-Chain": base64.b64encode(der(chain.sub) + der(pki.ca_cert)).decode(),
        },
        "haproxy sibling leaf + its chain": {
            "X-Client-Cert": _b64_leaf(leaf),
            "X-Client-Cert-Chain": base64.b64encode(der(chain.sibling)).decode(),
        },
        "pem leaf and sub in one header": {
            "X-Client-Cert": quote((cert_pem(leaf) + cert_pem(chain.sub)).decode(), safe="")
        },
        "nginx leaf only": {"X-Client-Cert": quote(cert_pem(leaf).decode(), safe="")},
    }[forwarded]
    with structlog.testing.capture_logs() as events:
        async with running(cfg, emp) as h:
            assert await status_of(f"{h.ocpp_url}/{P3}", None, headers) == expected
            metrics = await metrics_of(h.base_url)
    if expected == 101:
        assert refused(metrics) == {}
        return
    assert refused(metrics) == {"client_cert_untrusted": 1.0}
    (said,) = [e for e in events if e["event"] == "security.client_cert_untrusted"]
    assert said["charge_point_id"] == P3 and said["subject_cn"] == P3
    assert said["issuer"] == leaf.issuer.rfc4514_string()
    assert said["sha256"] == sha256(leaf)
    assert said["reason"].startswith("no chain to a CA of client_ca_file")


async def test_tls_handshakes_that_fail_for_other_reasons_are_refusals_too(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    """A charger without our CA in its store, or limited to TLS 1.1, used to vanish."""
    stranger_ca, _ = make_ca("Not the gateway's CA", ORG)
    (tmp_path / "stranger.pem").write_bytes(cert_pem(stranger_ca))
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=tls_keys(pki, pki.ca.cert))
    with structlog.testing.capture_logs() as events:
        async with running(cfg, emp) as h:
            url = f"{wss(h.ocpp_url)}/{P2}"
            no_ca = ssl.create_default_context(cafile=str(tmp_path / "stranger.pem"))
            for _ in range(2):
                with pytest.raises(ssl.SSLCertVerificationError):  # the client refuses us
                    await asyncio.to_thread(blocking_tls_client, h.csms.port, no_ca)
            with tls11_client(pki.ca.cert) as old:
                await tls_refused(url, old)
            # A TCP probe (a load balancer's health check) that closes before any TLS is
            # closed quietly: not a refusal.
            _, writer = await asyncio.open_connection("127.0.0.1", h.csms.port)
            writer.close()
            await writer.wait_closed()
            gate = h.csms.tls
            assert gate is not None
            await eventually(lambda: gate.handshakes_abandoned == 1)
            # The gateway keeps serving TLS: a profile-2 charger boots.
            async with SimCharger(
                P2, url[: -len(P2) - 1], password=PASSWORD, ssl=pki.client_context()
            ) as cp:
                await cp.connect()
                assert cp.boot_status == "Accepted"
            metrics = await metrics_of(h.base_url)
    assert 'cpo_gateway_ocpp_refused_total{reason="tls_handshake_failed"} 3.0' in metrics
    said = [e for e in events if e["event"] == "security.tls_handshake_failed"]
    reasons = {e["reason"] for e in said}
    print("TLS handshake failures:", reasons)
    assert len(said) == 2 and {e["source"] for e in said} == {"127.0.0.1"}, said
    assert reasons == {
        "TLSV1_ALERT_UNKNOWN_CA",
        "UNSUPPORTED_PROTOCOL",
    }  # once for two tries: per source and reason
    assert gate.handshakes_failed == 3
