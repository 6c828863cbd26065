"""SIGHUP: the stations file, the log level and charger passwords are read again while the
gateway runs. New and changed stations are posted, removed ones posted as deleted and their
chargers closed; an invalid file, or a connector change of a posted station, changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cpo_gateway.app import Gateway
from cpo_gateway.bench.soak import gateway as soak_gateway
from cpo_gateway.config import load_config
from cpo_gateway.csms.passwords import hash_password
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import Harness, running_gateway, write_config
from tests.test_stations_sync import edit_stations, without_hamburg

NEW_STATION = """
[[station]]
id = "DE-KOE-DOM-01"
name = "Domplatte"
latitude = 50.9413
longitude = 6.9583
cpo_id = "DE*CPO"
is_open_24 = true
address = { street = "Domkloster", street_number = "4", city = "Köln", zip = "50667", country = "DE" }
contact = { phone = "+49 221 1234567" }

[[station.connector]]
evse_id = "DE*CPO*E4001*1"
type = "Type2"
speed_kw = 22.0
charge_point = "CP-KOE-001"
connector = 1
"""
PASSWORD = "a-charger-password-0001"


def gateway_for(path: Path) -> Gateway:
    return Gateway(load_config(path, {}), load=lambda: load_config(path, {}))


async def refused_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, subprotocols=[Subprotocol("ocpp1.6")]):
            pass
    return info.value.response.status_code


def station_ids(calls: list[dict[str, object]]) -> list[str]:
    out = []
    for body in calls:
        station = body["station"]
        assert isinstance(station, dict)
        out.append(str(station["id"]))
    return sorted(out)


async def test_a_reload_posts_new_changed_and_removed_stations(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    async with running_gateway(gateway_for(config), emp) as h:
        await emp.wait_for(lambda: len(emp.stations) == 3)
        async with h.charger("CP-HH-001") as hamburg:
            await hamburg.connect()
            before = len(emp.calls("station-post"))
            edit_stations(config, 'name = "Alexanderplatz Parkhaus"', 'name = "Alexa Parkhaus"')
            without_hamburg(config)
            stations = config.parent / "stations.toml"
            stations.write_text(stations.read_text() + NEW_STATION)

            assert await h.gateway.reload() is True

            await emp.wait_for(lambda: len(emp.calls("station-post")) >= before + 3)
            posted = station_ids(emp.calls("station-post")[before:])
            assert posted == ["DE-BER-ALEX-01", "DE-HH-HAFEN-01", "DE-KOE-DOM-01"]
            assert emp.stations["DE-BER-ALEX-01"]["name"] == "Alexa Parkhaus"
            assert "DE-HH-HAFEN-01" not in emp.stations  # posted as deleted
            # The removed station's charger is closed, and refused when it comes back.
            await wait_closed(h, "CP-HH-001")
        assert await refused_status(f"{h.ocpp_url}/CP-HH-001") == 404
        async with h.charger("CP-KOE-001") as cologne:
            await cologne.connect()
            assert cologne.boot_status == "Accepted"
        await emp.wait_for(lambda: "DE*CPO*E4001*1" in emp.statuses, timeout=10)


async def wait_closed(h: Harness, cp_id: str) -> None:
    assert h.gateway.csms is not None
    for _ in range(250):
        if cp_id not in h.gateway.csms.connections:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{cp_id} is still connected after the reload")


async def test_a_reload_applies_a_new_charger_password(tmp_path: Path, emp: SandboxEmp) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    async with running_gateway(gateway_for(config), emp) as h:
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()  # profile 0: no password yet
        stations = config.parent / "stations.toml"
        stations.write_text(
            stations.read_text() + f'\n[[charger]]\nid = "CP-BER-001"\nsecurity_profile = 1\n'
            f'password_hash = "{hash_password(PASSWORD)}"\n'
        )
        assert await h.gateway.reload() is True
        assert await refused_status(f"{h.ocpp_url}/CP-BER-001") == 401
        async with h.charger("CP-BER-001", password=PASSWORD) as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"


async def test_an_invalid_file_is_refused_and_the_running_one_kept(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    async with running_gateway(gateway_for(config), emp) as h:
        await emp.wait_for(lambda: len(emp.stations) == 3)
        core = h.gateway.core
        assert core is not None
        stations = config.parent / "stations.toml"
        good = stations.read_text()
        stations.write_text(good + "\n[[station]]\nid = \n")  # not TOML
        assert await h.gateway.reload() is False
        edit_stations(config, "latitude = 52.5219", "latitude = 152.5219")
        assert await h.gateway.reload() is False  # a bad value, named in the log
        # A posted station's connectors may not change (OIOI): refused as a whole.
        stations.write_text(
            good.replace('evse_id = "DE*CPO*E3001*2"', 'evse_id = "DE*CPO*E3001*9"')
        )
        assert await h.gateway.reload() is False
        assert len(core.catalogue.stations) == 3
        assert core.catalogue.evse("DE*CPO*E3001*2") and not core.catalogue.evse("DE*CPO*E3001*9")
        async with h.charger("CP-HH-001") as cp:
            await cp.connect()
            assert cp.boot_status == "Accepted"


async def test_sighup_reloads_the_daemon_instead_of_killing_it(tmp_path: Path) -> None:
    async with SandboxEmp(api_key=soak_gateway.OUTBOUND_KEY) as emp:
        ocpp_port, oioi_port = soak_gateway.free_port(), soak_gateway.free_port()
        config = soak_gateway.write_config(
            tmp_path, emp_url=emp.url, chargers=2, ocpp_port=ocpp_port, oioi_port=oioi_port,
            log_level="info",
        )  # fmt: skip
        log_path = tmp_path / "gateway.log"
        gateway = soak_gateway.GatewayProcess(config, ocpp_port, oioi_port, log_path)
        await gateway.start()
        try:
            await emp.wait_for(lambda: len(emp.stations) == 2, timeout=30)
            (tmp_path / "stations.toml").write_text(soak_gateway.stations_toml(3))
            assert gateway.pid is not None
            os.kill(gateway.pid, signal.SIGHUP)
            await emp.wait_for(lambda: len(emp.stations) == 3, timeout=30)
            assert gateway.running, "SIGHUP must not stop the gateway"
        finally:
            code = await gateway.terminate()
    text = log_path.read_text()
    assert '"signal": "SIGHUP"' in text and '"event": "config.reloaded"' in text
    assert code == 0
