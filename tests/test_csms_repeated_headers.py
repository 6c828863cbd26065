"""A credential header sent twice (a charger's own beside the one a proxy added, or a
firmware that repeats Authorization) is a refusal that names the header, counted and
logged like any other, not a failure of the handshake code (HTTP 500)."""

from __future__ import annotations

import base64
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cpo_gateway.csms.refusals import Refusal
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import SimPki
from tests.test_csms_profile3 import P2, P3, PASSWORD, _der, pki, stations, tls_keys
from tests.test_csms_support import OCPP16, basic, config, running

__all__ = ["pki"]  # the fixture, imported for pytest


async def _status(url: str, headers: list[tuple[str, str]]) -> int:
    try:
        async with connect(url, subprotocols=[OCPP16], additional_headers=headers, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)


async def test_a_certificate_header_sent_twice_is_refused_as_unreadable(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    extra = tls_keys(pki, proxies='["127.0.0.1/32"]', server=False)
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=extra)
    own = base64.b64encode(_der(pki.client(P3))).decode()
    async with running(cfg, emp) as h:
        url = f"{h.ocpp_url}/{P3}"
        assert await _status(url, [("X-Client-Cert", own)]) == 101  # once: accepted
        twice = [("X-Client-Cert", own), ("X-Client-Cert", own)]
        assert await _status(url, twice) == 403
        assert h.csms.refusals.counts[Refusal.CLIENT_CERT_UNREADABLE] == 1


async def test_authorization_sent_twice_is_an_authentication_failure(
    tmp_path: Path, emp: SandboxEmp, pki: SimPki
) -> None:
    extra = tls_keys(pki, proxies='["127.0.0.1/32"]', server=False)
    cfg = config(tmp_path, emp, stations=stations(tmp_path), extra=extra)
    async with running(cfg, emp) as h:
        # Profile 2 over a trusted proxy (it terminated TLS).
        url = f"{h.ocpp_url}/{P2}"
        auth = basic(P2, PASSWORD)
        assert await _status(url, [("Authorization", auth)]) == 101
        assert await _status(url, [("Authorization", auth), ("Authorization", auth)]) == 401
        assert h.csms.auth_failures == 1
        assert h.csms.refusals.counts[Refusal.AUTH_FAILED] == 1
