"""Auth: OIOI keys and partner boundaries; OCPP Basic auth before the upgrade, TLS 1.2 or newer,
no downgrade from profile 2 to 1; failed attempts logged as security events and rate-limited
per source and identity."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from cpo_gateway.csms.passwords import hash_password
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from tests.conftest import INBOUND_KEY, OUTBOUND_KEY, PARTNER
from tests.test_csms_auth import PASSWORD, password_stations, refused, self_signed
from tests.test_csms_support import CP, OCPP16, basic, config, running, tls11_client

OTHER_KEY = "other-inbound-key-0002"
OTHER_PARTNER = "other-partner-identifier-02"
EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"


def two_emps(url: str) -> str:
    block = """
        [[emp]]
        name = "{name}"
        url = "{url}"
        api_key = "{out}"
        inbound_api_key = "{key}"
        partner_identifier = "{partner}"
        online_authorization = false
    """
    return block.format(
        name="sandbox", url=url, out=OUTBOUND_KEY, key=INBOUND_KEY, partner=PARTNER
    ) + block.format(name="other", url=url, out=OUTBOUND_KEY, key=OTHER_KEY, partner=OTHER_PARTNER)


async def test_oioi_keys_and_partner_boundaries(tmp_path: Path, emp: SandboxEmp) -> None:
    async with running(config(tmp_path, emp, emps=two_emps(emp.url)), emp) as h:
        for key in (None, "", "wrong-key-0000", INBOUND_KEY + "x"):
            async with EmpClient(h.oioi_url, key or "") as client:
                if key is None:
                    assert client._session is not None
                    async with client._session.post(h.oioi_url, data=b"{}") as response:
                        status, body = response.status, await response.json()
                else:
                    status, body = await client.rfid_post(PARTNER, ["0A0B0C0D"])
            assert (status, body["result"]["code"]) == (401, 210), body
        assert await h.store.whitelist_counts() == {}
        async with (
            h.charger(CP) as cp,
            h.client() as mine,
            EmpClient(h.oioi_url, OTHER_KEY) as other,
        ):
            await cp.connect()
            await cp.status(1, "Available")
            # A partner acting on another partner's identifier.
            status, body = await other.rfid_post(PARTNER, ["0A0B0C0D"])
            assert (status, body["result"]["code"]) == (403, 220), body
            status, body = await mine.session_start(EVSE, EVCO)
            assert body["result"]["code"] == 0, body
            session_id = body["session-start"]["session-id"]
            await emp.wait_for(lambda: cp.transaction_id(1) is not None, timeout=10)
            # ... and on another partner's session: refused, and the charger is not told.
            for sid in (session_id, None):
                status, body = await other.session_stop(EVSE, EVCO, sid)
                assert status in (200, 403) and body["result"]["code"] != 0, body
            assert not any(a == "RemoteStopTransaction" for a, _ in cp.received)
            assert cp.transaction_id(1) is not None
            status, body = await mine.session_stop(EVSE, EVCO, session_id)
            assert body["result"]["code"] == 0, body


async def test_ocpp_credentials_are_checked_before_the_upgrade_and_logged(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    stations = password_stations(tmp_path, 1, hash_password(PASSWORD))
    with structlog.testing.capture_logs() as events:
        async with running(config(tmp_path, emp, stations=stations), emp) as h:
            url = f"{h.ocpp_url}/{CP}"
            for header in (None, basic(CP, "wrong-password-0000"), basic("CP-HH-001", PASSWORD)):
                extra = {"Authorization": header} if header else None
                error = await refused(url, subprotocols=[OCPP16], additional_headers=extra)
                assert error.response.status_code == 401
            assert not h.csms.connections
    failed = [e for e in events if e["event"] == "security.auth_failed"]
    assert [e["reason"] for e in failed] == [
        "no basic auth header", "wrong password", "username is not the charge point id"
    ]  # fmt: skip
    assert all(e["charge_point_id"] == CP and e["log_level"] == "warning" for e in failed)
    assert all(PASSWORD not in str(e) for e in events), "no password in the logs"


async def test_tls_below_1_2_and_a_downgrade_to_profile_1_are_refused(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    pair = self_signed(tmp_path)
    if pair is None:
        pytest.skip("the openssl tool is needed to make a certificate")
    cert, key = pair
    stations = password_stations(tmp_path, 2, hash_password(PASSWORD))
    auth = {"Authorization": basic(CP, PASSWORD)}
    # Profile 2 charger, right password, on a listener without TLS: the downgrade to profile 1.
    async with running(config(tmp_path, emp, stations=stations), emp) as h:
        error = await refused(f"{h.ocpp_url}/{CP}", subprotocols=[OCPP16], additional_headers=auth)
        assert error.response.status_code == 403
    tls = f'[ocpp.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    async with running(config(tmp_path, emp, stations=stations, extra=tls), emp) as h:
        port = h.csms.port
        # On the TLS listener a plain websocket does not even get an HTTP answer.
        with pytest.raises((InvalidMessage, OSError)):
            async with connect(f"ws://127.0.0.1:{port}/ocpp/{CP}", subprotocols=[OCPP16],
                               additional_headers=auth, open_timeout=5):  # fmt: skip
                pass
        with tls11_client(cert) as old, pytest.raises((ssl.SSLError, ConnectionError)):
            async with connect(f"wss://127.0.0.1:{port}/ocpp/{CP}", subprotocols=[OCPP16],
                               ssl=old, additional_headers=auth, open_timeout=5):  # fmt: skip
                pass
        assert not h.csms.connections


async def _statuses_of_failed_logins(url: str, n: int) -> list[int]:
    statuses = []
    for _ in range(n):
        error = await refused(url, subprotocols=[OCPP16],
                              additional_headers={"Authorization": basic(CP, "guess-0000")})  # fmt: skip
        statuses.append(error.response.status_code)
    return statuses


async def test_repeated_failed_ocpp_logins_are_rate_limited(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    stations = password_stations(tmp_path, 1, hash_password(PASSWORD))
    async with running(config(tmp_path, emp, stations=stations), emp) as h:
        statuses = await _statuses_of_failed_logins(f"{h.ocpp_url}/{CP}", 30)
    assert statuses[0] == 401 and 429 in statuses, statuses


async def test_repeated_wrong_oioi_keys_are_security_events_and_rate_limited(
    harness: Any,
) -> None:
    statuses = []
    with structlog.testing.capture_logs() as events:
        async with EmpClient(harness.oioi_url, "wrong-key-0000") as client:
            for _ in range(30):
                statuses.append((await client.rfid_post(PARTNER, ["0A0B0C0D"]))[0])
    assert any(str(e["event"]).startswith("security.") for e in events)
    assert statuses[0] == 401 and 429 in statuses, statuses
