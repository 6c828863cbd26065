"""A stations file with tariffs, for the OCPI object tests (read by the real loader)."""

from __future__ import annotations

from pathlib import Path

from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.stations import load_stations

STATIONS = """
[[station]]
id = "DE-BER-ALEX-01"
name = "Alexanderplatz Parkhaus"
latitude = 52.52191
longitude = 13.41321
cpo_id = "DE*CPO"
is_open_24 = true
floor_level = -1
is_reservable = true
address = { street = "Alexanderstraße", street_number = "7", city = "Berlin", zip = "10178", country = "DE" }
contact = { phone = "+49 30 1234567" }

[[station.connector]]
evse_id = "DE*CPO*E1001*1"
type = "Type2"
speed_kw = 22.0
charge_point = "CP-BER-001"
connector = 1
tariff = "AC"

[[station.connector]]
evse_id = "DE*CPO*E1001*2"
type = "Schuko"
speed_kw = 3.7
charge_point = "CP-BER-001"
connector = 2

[[station]]
id = "DE-MUC-MAX-01"
name = "Maximilianstraße Schnelllader"
latitude = 48.13903
longitude = 11.58361
cpo_id = "DE*CPO"
is_open_24 = false
address = { street = "Maximilianstraße", street_number = "35", city = "München", zip = "80539", country = "DE" }
contact = { phone = "+49 89 7654321" }

[[station.open_hour_notes]]
times = ["07:00", "24:00"]
days = ["Mo", "Sa"]

[[station.connector]]
evse_id = "DE*CPO*E2001"
type = "Combo"
speed_kw = 150.0
charge_point = "CP-MUC-DC1"
connector = 1
tariff = "DC"
max_voltage = 920
max_amperage = 200

[[station.connector]]
evse_id = "DE*CPO*E2001"
type = "Chademo"
speed_kw = 50.0
charge_point = "CP-MUC-DC1"
connector = 2
tariff = "DC"

[[tariff]]
id = "AC"
currency = "EUR"
alt_text = "2.50 EUR start, 1.00 EUR/h charging, 5.00 EUR/h parking"
[[tariff.element]]
[[tariff.element.price_component]]
type = "FLAT"
price = 2.50
vat = 15
[[tariff.element]]
[[tariff.element.price_component]]
type = "TIME"
price = "1.00"
vat = 20
step_size = 900
[[tariff.element]]
[[tariff.element.price_component]]
type = "PARKING_TIME"
price = 5.00
vat = 10
step_size = 300

[[tariff]]
id = "DC"
currency = "EUR"
[[tariff.element]]
[[tariff.element.price_component]]
type = "ENERGY"
price = 0.59
vat = 19
step_size = 1000
[tariff.element.restrictions]
start_time = "07:00"
end_time = "22:00"
[[tariff.element]]
[[tariff.element.price_component]]
type = "ENERGY"
price = 0.39
vat = 19
step_size = 1000
"""


def catalogue(tmp_path: Path, text: str = STATIONS) -> Catalogue:
    path = tmp_path / "stations.toml"
    path.write_text(text, encoding="utf-8")
    return load_stations(path)
