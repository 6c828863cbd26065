"""The OCPP handshake: subprotocol, charger identity, HTTP Basic auth and TLS (security
profiles 1 and 2), all decided before the websocket upgrade."""

from __future__ import annotations

import asyncio
import io
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cpo_gateway import cli
from cpo_gateway.csms.passwords import hash_password
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.test_csms_support import (
    CP,
    OCPP16,
    RawCharger,
    basic,
    config,
    running,
    stations_with,
    tls11_client,
)

PASSWORD = "correct-horse-battery-staple"


async def refused(url: str, **kwargs: object) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=5, **kwargs):  # type: ignore[arg-type]
            pass
    return info.value


def body(error: InvalidStatus) -> str:
    return error.response.body.decode() if error.response.body else ""


def password_stations(tmp_path: Path, profile: int, password_hash: str | None) -> Path:
    line = f'password_hash = "{password_hash}"' if password_hash else ""
    return stations_with(
        tmp_path, f'[[charger]]\nid = "{CP}"\nsecurity_profile = {profile}\n{line}\n'
    )


# --- subprotocol and identity ----------------------------------------------------------------
async def test_subprotocol_is_chosen_in_our_order(tmp_path: Path, emp: SandboxEmp) -> None:
    offered = [Subprotocol("ocpp2.0.1"), OCPP16]
    async with (
        running(config(tmp_path, emp), emp) as h,
        connect(f"{h.ocpp_url}/{CP}", subprotocols=offered) as ws,
    ):
        assert ws.subprotocol == "ocpp2.0.1"  # ours first, whatever the charger's order
    async with (
        running(config(tmp_path, emp), emp) as h,
        connect(f"{h.ocpp_url}/{CP}", subprotocols=[OCPP16, Subprotocol("ocpp2.0.1")]) as ws,
    ):
        assert ws.subprotocol == "ocpp2.0.1"


@pytest.mark.parametrize("offered", [None, ["ocpp2.0"], ["mqtt"]])
async def test_no_supported_subprotocol_gets_400_before_upgrade(
    tmp_path: Path, emp: SandboxEmp, offered: list[str] | None
) -> None:
    async with running(config(tmp_path, emp), emp) as h:
        error = await refused(f"{h.ocpp_url}/{CP}", subprotocols=offered)
        assert error.response.status_code == 400
        assert "ocpp2.0.1, ocpp1.6" in body(error)
        assert not h.csms.connections


async def test_unknown_charger_and_wrong_path_get_404(tmp_path: Path, emp: SandboxEmp) -> None:
    async with running(config(tmp_path, emp), emp) as h:
        error = await refused(f"{h.ocpp_url}/CP-NOBODY", subprotocols=[OCPP16])
        assert error.response.status_code == 404
        assert "unknown charge point" in body(error)
        base = h.ocpp_url.rsplit("/", 1)[0]
        error = await refused(f"{base}/elsewhere/{CP}", subprotocols=[OCPP16])
        assert error.response.status_code == 404


async def test_unknown_charger_allowed_boots_pending(tmp_path: Path, emp: SandboxEmp) -> None:
    cfg = config(tmp_path, emp, ocpp="allow_unknown_chargers = true")
    async with running(cfg, emp) as h, h.charger("CP-NEW-0001") as cp:
        await cp.connect()
        assert cp.boot_status == "Pending"
        assert h.csms.registry.is_connected("CP-NEW-0001")
        row = await h.store.db.one("SELECT boot_status FROM chargers WHERE id = 'CP-NEW-0001'")
        assert row is not None and row["boot_status"] == "Pending"


# --- security profile 1: HTTP Basic auth -------------------------------------------------------
async def test_profile_1_basic_auth(tmp_path: Path, emp: SandboxEmp) -> None:
    stations = password_stations(tmp_path, 1, hash_password(PASSWORD))
    async with running(config(tmp_path, emp, stations=stations), emp) as h:
        url = f"{h.ocpp_url}/{CP}"
        for header in (None, basic(CP, "wrong-password-0000"), basic("CP-HH-001", PASSWORD)):
            extra = {"Authorization": header} if header else None
            error = await refused(url, subprotocols=[OCPP16], additional_headers=extra)
            assert error.response.status_code == 401
            assert error.response.headers["WWW-Authenticate"].startswith("Basic")
        assert h.csms.auth_failures == 3
        assert not h.csms.connections
        async with h.charger(CP, password=PASSWORD) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"
        # A second login with the same password is answered from the verified cache.
        async with h.charger(CP, password=PASSWORD) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"


async def test_profile_1_without_any_password_cannot_connect(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    stations = password_stations(tmp_path, 1, None)
    async with running(config(tmp_path, emp, stations=stations), emp) as h:
        for header in (None, basic(CP, PASSWORD)):
            extra = {"Authorization": header} if header else None
            error = await refused(
                f"{h.ocpp_url}/{CP}", subprotocols=[OCPP16], additional_headers=extra
            )
            assert error.response.status_code == 401


async def test_password_set_with_the_cli_is_required(
    tmp_path: Path, emp: SandboxEmp, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path, emp)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    argv = ["charger", "-c", str(cfg.path), "set-password", "CP-HH-001", "--password-stdin"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    async with running(cfg, emp) as h:
        stored = await h.store.password_hash("CP-HH-001")
        assert stored is not None and stored.startswith("scrypt$") and PASSWORD not in stored
        error = await refused(f"{h.ocpp_url}/CP-HH-001", subprotocols=[OCPP16])
        assert error.response.status_code == 401
        async with h.charger("CP-HH-001", password=PASSWORD) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"
        # Chargers without a password and profile 0 still connect without credentials.
        async with RawCharger.open(h.ocpp_url, "CP-MUC-DC1") as raw:
            assert (await raw.call("Heartbeat", {}))[0] == 3


# --- security profile 2: TLS -------------------------------------------------------------------
async def test_profile_2_without_tls_gets_403(tmp_path: Path, emp: SandboxEmp) -> None:
    stations = password_stations(tmp_path, 2, hash_password(PASSWORD))
    async with running(config(tmp_path, emp, stations=stations), emp) as h:
        error = await refused(
            f"{h.ocpp_url}/{CP}",
            subprotocols=[OCPP16],
            additional_headers={"Authorization": basic(CP, PASSWORD)},
        )
        assert error.response.status_code == 403


def self_signed(directory: Path) -> tuple[Path, Path] | None:
    """A certificate for 127.0.0.1 made with the openssl tool; None when it is missing.

    The cryptography package could do the same but is not installed here (not a dependency),
    so the tool is used whether or not it is.
    """
    if shutil.which("openssl") is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


async def test_profile_2_over_tls(tmp_path: Path, emp: SandboxEmp) -> None:
    pair = self_signed(tmp_path)
    if pair is None:
        print("skipping: neither the cryptography package nor the openssl tool is available")
        pytest.skip("no way to make a certificate")
    cert, key = pair
    stations = password_stations(tmp_path, 2, hash_password(PASSWORD))
    tls = f'[ocpp.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    async with running(config(tmp_path, emp, stations=stations, extra=tls), emp) as h:
        port = h.csms.port
        url = f"wss://127.0.0.1:{port}{h.gateway.config.ocpp.path}"
        client = ssl.create_default_context(cafile=str(cert))
        async with SimCharger(CP, url, password=PASSWORD, ssl=client, call_timeout=10) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"
        # TLS alone is not enough: profile 2 is Basic auth over TLS.
        error = await refused(f"{url}/{CP}", subprotocols=[OCPP16], ssl=client)
        assert error.response.status_code == 401
        # A client that cannot speak TLS 1.2 or newer is refused in the TLS handshake.
        with tls11_client(cert) as old, pytest.raises((ssl.SSLError, ConnectionError)) as info:
            async with connect(f"{url}/{CP}", subprotocols=[OCPP16], ssl=old, open_timeout=5):
                pass
        print("TLS 1.1 client refused:", repr(info.value))
        # ... while the same client limited to TLS 1.2 gets through to the HTTP layer.
        tls12 = ssl.create_default_context(cafile=str(cert))
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        error = await refused(f"{url}/{CP}", subprotocols=[OCPP16], ssl=tls12)
        assert error.response.status_code == 401
        assert not h.csms.connections
