"""Configuration: every kind of error names the file, the dotted key, expected and found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cpo_gateway.config import ConfigError, env_key_name, load_config
from tests.conftest import ROOT, write_config


def _problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value.problems


def test_example_config_loads() -> None:
    cfg = load_config(ROOT / "config" / "gateway.example.toml", {})
    assert cfg.ocpp.port == 9000 and cfg.oioi.port == 8080
    assert cfg.ocpp.path == "/ocpp" and cfg.oioi.path == "/api/v4/request"
    assert [e.name for e in cfg.emps] == ["sandbox"]
    assert len(cfg.catalogue.stations) == 3
    # Two connectors share one EVSE ID on the DC charger.
    assert len(cfg.catalogue.evse("DE*CPO*E2001")) == 2
    assert cfg.gateway.database.name == "gateway.db"


def test_emp_request_timeout_is_read_and_bounded(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    assert load_config(path, {}).emps[0].request_timeout_s == 30.0
    text = path.read_text().replace("verify_timeout_s = 1.0", "verify_timeout_s = 1.0\n"
                                    "request_timeout_s = 7.5")  # fmt: skip
    path.write_text(text)
    assert load_config(path, {}).emps[0].request_timeout_s == 7.5
    path.write_text(text.replace("request_timeout_s = 7.5", "request_timeout_s = 0"))
    (problem,) = _problems(path)
    assert "emp[0].request_timeout_s: expected a number between 0.5 and 300" in problem


def test_state_dir_defaults_to_systemd_state_directory(tmp_path: Path) -> None:
    path = write_config(tmp_path, gateway="")
    text = path.read_text().replace(f'state_dir = "{tmp_path / "state"}"', "")
    path.write_text(text)
    assert load_config(path, {"STATE_DIRECTORY": "/var/lib/x"}).gateway.state_dir == Path(
        "/var/lib/x"
    )
    assert load_config(path, {}).gateway.state_dir == Path("./var")


def test_unknown_key_is_named_with_known_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, ocpp="prot = 9000")
    (problem,) = _problems(path)
    assert str(path) in problem and "ocpp.prot: unknown key" in problem and "port" in problem


def test_wrong_type_names_expected_and_found(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(
        path.read_text().replace("heartbeat_interval_s = 60", 'heartbeat_interval_s = "60"')
    )
    (problem,) = _problems(path)
    assert "ocpp.heartbeat_interval_s: expected an integer between 10 and 86400" in problem
    assert "found string '60'" in problem


def test_out_of_range_and_bad_choice(tmp_path: Path) -> None:
    path = write_config(tmp_path, sessions='id_tag_strategy = "md5"', outbox="batch_size = 0")
    problems = _problems(path)
    assert any(
        "sessions.id_tag_strategy: expected one of 'evco', 'hash', found string 'md5'" in p
        for p in problems
    )
    assert any(
        "outbox.batch_size: expected an integer between 1 and 10000, found integer 0" in p
        for p in problems
    )


def test_missing_key_names_all_three_ways(tmp_path: Path) -> None:
    emps = """
        [[emp]]
        name = "plug-surf"
        url = "http://127.0.0.1:1/x"
        inbound_api_key = "k-inbound-000000001"
        partner_identifier = "partner-identifier-01"
    """
    (problem,) = _problems(write_config(tmp_path, emps=emps))
    assert "emp[0].api_key: expected a key, found none" in problem
    assert "emp[0].api_key_file" in problem and "CPO_GATEWAY_EMP_PLUG_SURF_API_KEY" in problem


def test_key_from_environment_and_file(tmp_path: Path) -> None:
    key_file = tmp_path / "creds" / "inbound"
    key_file.parent.mkdir()
    key_file.write_text("from-file-key\n")
    emps = """
        [[emp]]
        name = "e1"
        url = "http://127.0.0.1:1/x"
        inbound_api_key_file = "$CREDENTIALS_DIRECTORY/inbound"
        partner_identifier = "partner-identifier-01"
    """
    env = {env_key_name("e1", "api_key"): "from-env", "CREDENTIALS_DIRECTORY": str(key_file.parent)}
    cfg = load_config(write_config(tmp_path, emps=emps), env)
    assert cfg.emps[0].api_key == "from-env"
    assert cfg.emps[0].inbound_api_key == "from-file-key"
    assert "from-env" not in repr(cfg.emps[0])  # secrets stay out of logs


def test_unreadable_key_file(tmp_path: Path) -> None:
    emps = """
        [[emp]]
        name = "e1"
        url = "http://127.0.0.1:1/x"
        api_key = "a-key"
        inbound_api_key_file = "/nonexistent/key"
        partner_identifier = "partner-identifier-01"
    """
    (problem,) = _problems(write_config(tmp_path, emps=emps))
    assert (
        "emp[0].inbound_api_key_file: expected a readable file" in problem
        and "/nonexistent/key" in problem
    )


def test_duplicate_inbound_keys_refused(tmp_path: Path) -> None:
    one = """
        [[emp]]
        name = "{n}"
        url = "http://127.0.0.1:1/x"
        api_key = "a"
        inbound_api_key = "same-key"
        partner_identifier = "partner-identifier-{n}"
    """
    problems = _problems(write_config(tmp_path, emps=one.format(n="a") + one.format(n="b")))
    assert any("emp[1].inbound_api_key: expected a value unique" in p for p in problems)


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[ocpp\nport = 1")
    (problem,) = _problems(path)
    assert str(path) in problem and "not valid TOML" in problem


def test_missing_file() -> None:
    (problem,) = _problems(Path("/nonexistent/gateway.toml"))
    assert "file not found" in problem


STATION = """
[[station]]
id = "S1"
name = "n"
latitude = {lat}
longitude = 13.0
cpo_id = "DE*CPO"
is_open_24 = true
address = {{ street = "s", street_number = "1", city = "c", zip = "1", country = "{country}" }}
contact = {{ phone = "1" }}

[[station.connector]]
evse_id = "{evse}"
type = "{type}"
speed_kw = 11.0
charge_point = "CP1"
connector = 1
"""


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("evse", "NOT-AN-EVSE", "connector[0].evse_id: expected an EVSE ID"),
        (
            "evse",
            "FR*ABC*E1",
            "connector[0].evse_id: expected an EVSE ID of the station's operator DE*CPO",
        ),
        ("type", "Type9", "connector[0].type: expected one of 'Type2'"),
        ("country", "XX", "address.country: expected an ISO 3166-1 alpha-2 code"),
        ("lat", "91.0", "station[0].latitude: expected a number between -90.0 and 90.0"),
    ],
)
def test_station_errors(tmp_path: Path, field: str, value: str, expected: str) -> None:
    values = {"lat": "52.0", "country": "DE", "evse": "DE*CPO*E1", "type": "Type2", field: value}
    stations = tmp_path / "st.toml"
    stations.write_text(STATION.format(**values))
    problems = _problems(write_config(tmp_path, stations=stations))
    assert any(expected in p and "stations.toml" in p for p in problems), problems


def test_duplicate_ocpp_mapping_refused(tmp_path: Path) -> None:
    one = STATION.format(lat="52.0", country="DE", evse="DE*CPO*E1", type="Type2")
    two = one.replace('id = "S1"', 'id = "S2"').replace("DE*CPO*E1", "DE*CPO*E2")
    stations = tmp_path / "st.toml"
    stations.write_text(one + two)
    problems = _problems(write_config(tmp_path, stations=stations))
    assert any(
        "expected one EVSE per OCPP connector" in p and "'CP1' connector 1" in p for p in problems
    )


def test_check_config_cli_ok_and_broken(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "check-config", "-c", str(ROOT / "config" / "gateway.example.toml")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "stations:   3" in ok.stdout and "EMPs:       1" in ok.stdout
    broken = write_config(tmp_path)
    broken.write_text(broken.read_text().replace("port = 0", "port = 70000", 1))
    bad = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "check-config", "-c", str(broken)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 78
    assert "ocpp.port: expected an integer between 0 and 65535, found integer 70000" in bad.stderr
