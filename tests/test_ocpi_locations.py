"""OCPI Locations from the stations file: structure, derived values, status mapping, and
validity against models the project did not write."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cpo_gateway.bridge.model import ConnectorState, EvseStatus
from cpo_gateway.ocpi.locations import Locations, ocpi_problems, ocpi_status, status_patch
from cpo_gateway.ocpi.ports import EvseState
from cpo_gateway.ocpi.transport import Party
from tests.ocpi_fixtures import catalogue
from tests.ocpi_models import validate

US = Party("DE", "CPO")
NAME = "Example CPO GmbH"
LOADED = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LAT = re.compile(r"-?[0-9]{1,2}\.[0-9]{5,7}")
LON = re.compile(r"-?[0-9]{1,3}\.[0-9]{5,7}")


def _locations(tmp_path: Path, states: dict[str, EvseState] | None = None) -> Locations:
    return Locations(catalogue(tmp_path), states or {}, US, LOADED, NAME)


def test_every_location_evse_and_connector_is_valid_ocpi_2_2_1(tmp_path: Path) -> None:
    charged = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    locs = _locations(tmp_path, {"DE*CPO*E2001": EvseState(EvseStatus.OCCUPIED, None, charged)})
    bodies = locs.all()
    assert [b["id"] for b in bodies] == ["DE-BER-ALEX-01", "DE-MUC-MAX-01"]
    for body in bodies:
        validate("Location", body)
        assert LAT.fullmatch(body["coordinates"]["latitude"])
        assert LON.fullmatch(body["coordinates"]["longitude"])
        for evse in body["evses"]:
            validate("Evse", evse)
            for conn in evse["connectors"]:
                validate("Connector", conn)
    ber, muc = bodies
    assert ber["country"] == "DEU" and ber["time_zone"] == "Europe/Berlin"
    assert ber["address"] == "Alexanderstraße 7" and ber["postal_code"] == "10178"
    assert ber["operator"] == {"name": "Example CPO GmbH"}
    assert ber["opening_times"] == {"twentyfourseven": True}
    # The DC EVSE changed status after the file was loaded: it and its location say so.
    assert muc["last_updated"] == "2026-03-02T08:30:00Z"
    assert ber["last_updated"] == "2026-03-01T10:00:00Z"
    hours = muc["opening_times"]["regular_hours"]
    assert [h["weekday"] for h in hours] == [1, 2, 3, 4, 5, 6]
    assert hours[0] == {"weekday": 1, "period_begin": "07:00", "period_end": "23:59"}


def test_connectors_sharing_an_evse_id_are_one_evse_with_derived_electrics(
    tmp_path: Path,
) -> None:
    ber, muc = _locations(tmp_path).all()
    assert [e["evse_id"] for e in ber["evses"]] == ["DE*CPO*E1001*1", "DE*CPO*E1001*2"]
    assert ber["evses"][0]["capabilities"] == ["REMOTE_START_STOP_CAPABLE", "RESERVABLE"]
    assert ber["evses"][0]["floor_level"] == "-1"
    type2, schuko = ber["evses"][0]["connectors"][0], ber["evses"][1]["connectors"][0]
    assert (type2["standard"], type2["format"], type2["power_type"]) == (
        "IEC_62196_T2",
        "SOCKET",
        "AC_3_PHASE",
    )
    # 22 kW on three phases of 230 V: 32 A (rounded up from 31.9).
    assert (type2["max_voltage"], type2["max_amperage"], type2["max_electric_power"]) == (
        230,
        32,
        22000,
    )
    assert type2["tariff_ids"] == ["AC"]
    assert "tariff_ids" not in schuko
    assert (schuko["standard"], schuko["power_type"], schuko["max_amperage"]) == (
        "DOMESTIC_F",
        "AC_1_PHASE",
        17,
    )
    (dc,) = muc["evses"]
    assert dc["uid"] == "DE*CPO*E2001" and [c["id"] for c in dc["connectors"]] == ["1", "2"]
    ccs, chademo = dc["connectors"]
    # The file's max_voltage/max_amperage win over what the type would give.
    assert (ccs["standard"], ccs["power_type"], ccs["max_voltage"], ccs["max_amperage"]) == (
        "IEC_62196_T2_COMBO",
        "DC",
        920,
        200,
    )
    assert (chademo["standard"], chademo["max_voltage"], chademo["max_amperage"]) == (
        "CHADEMO",
        500,
        100,
    )


@pytest.mark.parametrize(
    ("status", "reported", "expected"),
    [
        (EvseStatus.AVAILABLE, ConnectorState.AVAILABLE, "AVAILABLE"),
        (EvseStatus.OCCUPIED, ConnectorState.CHARGING, "CHARGING"),
        (EvseStatus.OCCUPIED, ConnectorState.PREPARING, "CHARGING"),
        # The core holds a connector that reports a fault while energy flows Occupied.
        (EvseStatus.OCCUPIED, ConnectorState.FAULTED, "CHARGING"),
        (EvseStatus.OCCUPIED, ConnectorState.UNAVAILABLE, "CHARGING"),
        (EvseStatus.RESERVED, ConnectorState.RESERVED, "RESERVED"),
        (EvseStatus.OFFLINE, ConnectorState.FAULTED, "OUTOFORDER"),
        (EvseStatus.OFFLINE, ConnectorState.UNAVAILABLE, "INOPERATIVE"),
        (EvseStatus.OFFLINE, ConnectorState.AVAILABLE, "UNKNOWN"),  # charger not connected
        (EvseStatus.OFFLINE, None, "UNKNOWN"),
        (EvseStatus.UNKNOWN, None, "UNKNOWN"),
    ],
)
def test_status_mapping(status: EvseStatus, reported: ConnectorState | None, expected: str) -> None:
    assert ocpi_status(EvseState(status, reported)) == expected


def test_single_objects_and_the_status_patch(tmp_path: Path) -> None:
    fault = EvseState(EvseStatus.OFFLINE, ConnectorState.FAULTED)
    locs = _locations(tmp_path, {"DE*CPO*E1001*2": fault})
    station = locs.find("DE-BER-ALEX-01")
    assert station is not None and locs.find("DE-NOWHERE") is None
    evse = locs.evse(station, "DE*CPO*E1001*2")
    assert evse is not None and evse["status"] == "OUTOFORDER"
    assert locs.evse(station, "DE*CPO*E2001") is None  # another location's EVSE
    conn = locs.connector(station, "DE*CPO*E1001*1", "1")
    assert conn is not None and conn["standard"] == "IEC_62196_T2"
    assert locs.connector(station, "DE*CPO*E1001*1", "2") is None
    at = datetime(2026, 3, 2, 9, 0, 5, 123000, tzinfo=UTC)
    assert status_patch(fault, at) == {
        "status": "OUTOFORDER",
        "last_updated": "2026-03-02T09:00:05Z",
    }
    assert status_patch(None, at, removed=True)["status"] == "REMOVED"


def test_a_station_in_a_country_of_several_zones_needs_its_time_zone_once_priced(
    tmp_path: Path,
) -> None:
    from cpo_gateway.tomlcheck import ConfigError
    from tests.ocpi_fixtures import STATIONS

    spanish = STATIONS.replace('zip = "10178", country = "DE"', 'zip = "28001", country = "ES"')
    with pytest.raises(ConfigError) as info:
        catalogue(tmp_path, spanish)
    assert any("station[0].time_zone" in p and "'ES'" in p for p in info.value.problems)
    zoned = spanish.replace(
        "is_reservable = true", 'is_reservable = true\ntime_zone = "Europe/Madrid"'
    )
    (ber, _) = Locations(catalogue(tmp_path, zoned), {}, US, LOADED).all()
    assert ber["time_zone"] == "Europe/Madrid" and ber["country"] == "ESP"
    bad = spanish.replace(
        "is_reservable = true", 'is_reservable = true\ntime_zone = "Mars/Olympus"'
    )
    with pytest.raises(ConfigError) as info:
        catalogue(tmp_path, bad)
    assert any("station[0].time_zone" in p and "Mars/Olympus" in p for p in info.value.problems)


def test_ocpi_problems_name_what_cannot_be_an_ocpi_location(tmp_path: Path) -> None:
    from tests.ocpi_fixtures import STATIONS

    assert ocpi_problems(catalogue(tmp_path)) == []
    text = STATIONS.replace('id = "DE-MUC-MAX-01"', 'id = "' + "M" * 37 + '"').replace(
        'zip = "80539", country = "DE"', 'zip = "10001", country = "US"'
    )
    # The Munich connectors have tariffs: the loader itself wants the zone; drop them.
    text = text.replace('tariff = "DC"\nmax_voltage', "max_voltage").replace(
        'connector = 2\ntariff = "DC"', "connector = 2"
    )
    problems = ocpi_problems(catalogue(tmp_path, text))
    assert [p.split(":")[0] for p in problems] == ["station[1].id", "station[1].time_zone"]
