"""The stations file's 2.0.1 identity mapping: connector N is EVSE N, connector 1, unless a
connector names its `evse` and `evse_connector`; check-config refuses what cannot be meant,
and a 2.0.1 charger's statuses and transactions land on the mapped connector."""

from __future__ import annotations

from pathlib import Path

import pytest
from ocpp.v201 import call

from cpo_gateway.app import Gateway
from cpo_gateway.config import ConfigError, load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.charger201 import Memory, charger201, meter
from tests.conftest import running_gateway, write_config

STATION = """
[[station]]
id = "S1"
name = "n"
latitude = 52.0
longitude = 13.0
cpo_id = "DE*CPO"
is_open_24 = true
address = {{ street = "s", street_number = "1", city = "c", zip = "1", country = "DE" }}
contact = {{ phone = "1" }}

[[station.connector]]
evse_id = "DE*CPO*E1*1"
type = "Type2"
speed_kw = 11.0
charge_point = "CP1"
connector = 1
{first}

[[station.connector]]
evse_id = "DE*CPO*E1*2"
type = "Type2"
speed_kw = 11.0
charge_point = "CP1"
connector = 2
{second}

[[charger]]
id = "CP1"
"""


def _stations(tmp_path: Path, first: str = "", second: str = "") -> Path:
    path = tmp_path / "st.toml"
    path.write_text(STATION.format(first=first, second=second))
    return path


def _problems(tmp_path: Path, first: str, second: str = "") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, stations=_stations(tmp_path, first, second)), {})
    return info.value.problems


def test_default_and_explicit_mapping(tmp_path: Path) -> None:
    path = write_config(tmp_path, stations=_stations(tmp_path, "", "evse = 1\nevse_connector = 2"))
    catalogue = load_config(path, {}).catalogue
    one, two = catalogue.connectors_of("CP1")
    assert one.evse_address == (1, 1)
    assert two.evse_address == (1, 2)
    assert catalogue.connector_by_address("CP1", 1, 2) is two


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("evse = 0", "", "connector[0].evse: expected an integer between 1 and 99"),
        ("evse_connector = -1", "", "connector[0].evse_connector: expected an integer"),
        ('evse = "1"', "", "connector[0].evse: expected an integer"),
        (
            "evse = 2",
            "",
            "expected one connector per 2.0.1 EVSE and connector, found charge point 'CP1' "
            "evse 2 evse_connector 1",
        ),
    ],
)
def test_check_config_refuses(tmp_path: Path, first: str, second: str, expected: str) -> None:
    problems = _problems(tmp_path, first, second)
    assert any(expected in p and "st" in p for p in problems), problems


async def test_a_2_0_1_charger_lands_on_the_mapped_connector(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    stations = _stations(tmp_path, "evse = 3", "evse = 3\nevse_connector = 2")
    cfg = load_config(write_config(tmp_path, emp_url=emp.url, stations=stations), {})
    async with running_gateway(Gateway(cfg), emp) as harness:
        async with charger201(harness.ocpp_url, "CP1", Memory()) as cp:
            await cp.call(
                call.StatusNotification(
                    timestamp="2026-01-01T00:00:00Z",
                    connector_status="Faulted",
                    evse_id=3,
                    connector_id=2,
                ),
                suppress=False,
            )
            await cp.event("Started", "K1", evse=3, meter_value=meter(100, 1))
        states = await harness.store.connector_states()
        tx = await harness.store.transaction_by_key("CP1", "K1")
    assert states[("CP1", 2)] == "Faulted"
    assert tx is not None and tx.connector == 1  # EVSE 3, connector 1 is connector 1
