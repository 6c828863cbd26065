"""OCPI Sessions and CDRs rendered from what the core builds (bridge/cdr.py), checked
against models the project did not write."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpo_gateway.bridge.cdr import build_cdr, build_session_update, cdr_from_dict, cdr_to_dict
from cpo_gateway.bridge.model import SignedReading
from cpo_gateway.bridge.owed import SessionPhase
from cpo_gateway.bridge.ports import SessionOrigin, SessionRecord, SessionState, TxRecord
from cpo_gateway.ocpi.cdrs import Cdrs
from cpo_gateway.ocpi.sessions import NotRenderable, Sessions
from cpo_gateway.ocpi.transport import Party
from tests.conftest import examples
from tests.ocpi_fixtures import catalogue
from tests.ocpi_models import validate

US = Party("DE", "CPO")
EMSP = Party("NL", "EMS")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WRITTEN = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _tx(charging_min: int, parking_min: int, kwh: float, *, stopped: bool = True) -> TxRecord:
    stop = START + timedelta(minutes=charging_min + parking_min)
    return TxRecord(
        id=7,
        session_id="5f0c6a2e-8d1b-4a8e-9c1d-0c1f2a3b4c5d",
        charge_point="CP-BER-001",
        connector=1,
        id_tag="04A2B3C4",
        started_at=_iso(START),
        meter_start_wh=1000.0,
        stopped_at=_iso(stop) if stopped else None,
        meter_stop_wh=1000.0 + kwh * 1000 if stopped else None,
        first_wh=1000.0,
        first_wh_at=_iso(START),
        last_wh=1000.0 + kwh * 1000,
        last_wh_at=_iso(START + timedelta(minutes=charging_min)),
        charge_start_at=_iso(START),
        charge_stop_at=_iso(START + timedelta(minutes=charging_min)),
    )


def _session(
    evse_id: str = "DE*CPO*E1001*1", kind: str = "rfid", user: str = "04A2B3C4"
) -> SessionRecord:
    return SessionRecord(
        id="5f0c6a2e-8d1b-4a8e-9c1d-0c1f2a3b4c5d",
        evse_id=evse_id,
        charge_point="CP-BER-001",
        connector=1,
        emp="emsp",
        origin=SessionOrigin.CARD,
        user_kind=kind,
        user_id=user,
        id_tag=user,
        auth_status="Accepted",
        auth_path="whitelist",
        state=SessionState.FINISHED,
        created_at=_iso(START),
        expires_at=None,
        transaction_id=7,
    )


def _cdr_payload(tx: TxRecord, session: SessionRecord) -> dict[str, Any]:
    assert session.evse_id is not None
    return cdr_to_dict(build_cdr(tx, session, session.evse_id, "NL*EMS"))


def test_a_cdr_on_a_priced_connector_costs_what_its_tariff_says(tmp_path: Path) -> None:
    cdrs = Cdrs(catalogue(tmp_path), US, EMSP)
    payload = _cdr_payload(_tx(165, 42, 30.0), _session())
    body = cdrs.cdr(payload, WRITTEN)
    validate("Cdr", body)
    assert body["id"] == body["session_id"] == "5f0c6a2e-8d1b-4a8e-9c1d-0c1f2a3b4c5d"
    assert (body["start_date_time"], body["end_date_time"]) == (
        "2026-03-02T09:00:00Z",
        "2026-03-02T12:27:00Z",
    )
    assert body["cdr_token"] == {
        "country_code": "NL",
        "party_id": "EMS",
        "uid": "04A2B3C4",
        "type": "RFID",
        "contract_id": "04A2B3C4",
    }
    assert body["auth_method"] == "WHITELIST"
    loc = body["cdr_location"]
    assert (loc["id"], loc["evse_id"], loc["connector_id"], loc["connector_standard"]) == (
        "DE-BER-ALEX-01",
        "DE*CPO*E1001*1",
        "1",
        "IEC_62196_T2",
    )
    assert body["total_cost"] == {"excl_vat": 9.0, "incl_vat": 10.3}
    assert body["total_parking_cost"] == {"excl_vat": 3.75, "incl_vat": 4.125}
    assert body["total_energy"] == 30.0
    assert body["total_time"] == 3.45 and body["total_parking_time"] == 0.7
    assert [p["dimensions"] for p in body["charging_periods"]] == [
        [{"type": "ENERGY", "volume": 30.0}, {"type": "TIME", "volume": 2.75}],
        [{"type": "PARKING_TIME", "volume": 0.7}],
    ]
    assert body["charging_periods"][1]["start_date_time"] == "2026-03-02T11:45:00Z"
    assert body["tariffs"][0]["id"] == "AC" and body["currency"] == "EUR"
    assert "signed_data" not in body
    assert body["last_updated"] == "2026-03-02T12:30:00Z"


def test_a_cdr_bills_its_charging_at_the_hours_it_charged_not_from_the_plug_in(
    tmp_path: Path,
) -> None:
    # The DC tariff: 0.59/kWh from 07:00 to 22:00 in Berlin, 0.39 otherwise, in 1 kWh steps.
    # Plugged in at 21:00 (20:00 UTC), charging under a scheduled start from 22:00 to 23:00:
    # the 20 kWh are night energy. Charging from the plug-in would have been 11.80.
    plug = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    tx = dataclasses.replace(
        _tx(60, 60, 20.0),
        started_at=_iso(plug),
        stopped_at=_iso(plug + 2 * hour),
        first_wh_at=_iso(plug + hour),
        last_wh_at=_iso(plug + 2 * hour),
        charge_start_at=_iso(plug + hour),
        charge_stop_at=_iso(plug + 2 * hour),
    )
    body = Cdrs(catalogue(tmp_path), US, EMSP).cdr(
        _cdr_payload(tx, _session("DE*CPO*E2001")), plug + 3 * hour
    )
    validate("Cdr", body)
    assert body["total_energy_cost"]["excl_vat"] == 7.8
    assert [p["dimensions"][0]["type"] for p in body["charging_periods"]] == [
        "PARKING_TIME",
        "ENERGY",
    ]


def test_the_same_cdr_renders_the_same_every_time(tmp_path: Path) -> None:
    # A retry after an outage carries the same id and the same body: never billed twice.
    cdrs = Cdrs(catalogue(tmp_path), US, EMSP)
    payload = _cdr_payload(_tx(60, 0, 11.0), _session())
    assert cdrs.cdr(payload, WRITTEN) == cdrs.cdr(dict(payload), WRITTEN)


def test_an_unpriced_connector_costs_zero_and_signed_readings_become_signed_data(
    tmp_path: Path,
) -> None:
    cdrs = Cdrs(catalogue(tmp_path), US, EMSP)
    key = "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
    readings = (
        SignedReading("OCMF|{B}|{S1}", "1000", "OCMF", None, nature="Start"),
        SignedReading("OCMF|{E}|{S2}", "4500", "OCMF", key, nature="End"),
    )
    tx = _tx(60, 0, 3.5)
    plain = _cdr_payload(tx, _session("DE*CPO*E1001*2", "evco-id", "NL-EMS-C12345678-X"))
    payload = cdr_to_dict(dataclasses.replace(cdr_from_dict(plain), signed=readings))
    body = cdrs.cdr(payload | {"auth_path": "remote"}, WRITTEN)
    validate("Cdr", body)
    assert body["total_cost"] == {"excl_vat": 0.0} and body["currency"] == "EUR"
    assert "tariffs" not in body and "total_parking_time" not in body
    assert body["signed_data"] == {
        "encoding_method": "OCMF",
        "public_key": key,
        "signed_values": [
            {"nature": "Start", "plain_data": "1000", "signed_data": "OCMF|{B}|{S1}"},
            {"nature": "End", "plain_data": "4500", "signed_data": "OCMF|{E}|{S2}"},
        ],
    }
    # Without signed readings the payload has no such key and the CDR no signed_data.
    assert "signed" not in plain and "signed_data" not in cdrs.cdr(plain, WRITTEN)
    assert body["auth_method"] == "COMMAND"
    assert body["cdr_token"]["type"] == "APP_USER"
    assert body["cdr_location"]["connector_standard"] == "DOMESTIC_F"


def test_a_cdr_before_the_end_or_on_an_unknown_evse_is_not_renderable(tmp_path: Path) -> None:
    cdrs = Cdrs(catalogue(tmp_path), US, EMSP)
    with pytest.raises(NotRenderable, match="session_interval.stop"):
        cdrs.cdr(_cdr_payload(_tx(60, 0, 3.5, stopped=False), _session()), WRITTEN)
    with pytest.raises(NotRenderable, match="evse_id"):
        cdrs.cdr(_cdr_payload(_tx(60, 0, 3.5), _session("DE*CPO*E9999")), WRITTEN)
    with pytest.raises(NotRenderable, match="not a CDR payload"):
        cdrs.cdr({"session_id": "x"}, WRITTEN)


@pytest.mark.parametrize("phase", list(SessionPhase))
def test_sessions_render_for_every_phase(tmp_path: Path, phase: SessionPhase) -> None:
    sessions = Sessions(catalogue(tmp_path), US, EMSP)
    tx = _tx(90, 0, 12.5, stopped=phase is SessionPhase.ENDED)
    now = (START + timedelta(minutes=90)).timestamp()
    update = build_session_update(tx, _session(), "DE*CPO*E1001*1", "NL*EMS", phase, now)
    body = sessions.session(update)
    validate("Session", body)
    assert body["id"] == "5f0c6a2e-8d1b-4a8e-9c1d-0c1f2a3b4c5d"
    assert body["kwh"] == 12.5
    assert body["status"] == ("COMPLETED" if phase is SessionPhase.ENDED else "ACTIVE")
    assert (body["location_id"], body["evse_uid"], body["connector_id"]) == (
        "DE-BER-ALEX-01",
        "DE*CPO*E1001*1",
        "1",
    )
    assert ("end_date_time" in body) is (phase is SessionPhase.ENDED)
    # 1.00/h charging for 90 minutes and the 2.50 start fee, so far.
    assert body["total_cost"]["excl_vat"] == 4.0
    patch = sessions.patch(update)
    assert set(patch) == {"kwh", "status", "last_updated"} | (
        {"end_date_time"} if phase is SessionPhase.ENDED else set()
    )
    assert patch["kwh"] == 12.5 and patch["last_updated"] == "2026-03-02T10:30:00Z"


@settings(max_examples=examples(80), deadline=None)
@given(
    st.integers(0, 600),
    st.integers(0, 600),
    st.floats(0, 400, allow_nan=False),
    st.sampled_from(["DE*CPO*E1001*1", "DE*CPO*E1001*2", "DE*CPO*E2001"]),
)
def test_any_ended_session_renders_a_valid_cdr(
    tmp_path_factory: pytest.TempPathFactory, charging: int, parking: int, kwh: float, evse: str
) -> None:
    cdrs = Cdrs(catalogue(tmp_path_factory.mktemp("cdr")), US, EMSP)
    body = cdrs.cdr(_cdr_payload(_tx(charging, parking, kwh), _session(evse)), WRITTEN)
    validate("Cdr", body)
    assert body["total_cost"]["excl_vat"] >= 0
    assert body["total_time"] >= body.get("total_parking_time", 0)


@settings(max_examples=examples(80), deadline=None)
@given(
    st.integers(0, 600),
    st.integers(0, 600),
    st.integers(0, 600),
    st.integers(0, 400_000).map(lambda wh: wh / 1000),
    st.sampled_from(["DE*CPO*E1001*1", "DE*CPO*E1001*2", "DE*CPO*E2001"]),
)
def test_a_cdrs_periods_add_up_to_its_totals_whenever_charging_began(
    tmp_path_factory: pytest.TempPathFactory,
    idle: int,
    charging: int,
    parking: int,
    kwh: float,
    evse: str,
) -> None:
    # Plugged in at START, charging `idle` minutes later for `charging` minutes, then parked.
    minute = timedelta(minutes=1)
    stop = START + (idle + charging + parking) * minute
    tx = dataclasses.replace(
        _tx(charging, parking, kwh),
        stopped_at=_iso(stop),
        first_wh_at=_iso(START + idle * minute),
        last_wh_at=_iso(START + (idle + charging) * minute),
        charge_start_at=_iso(START + idle * minute),
        charge_stop_at=_iso(START + (idle + charging) * minute),
    )
    body = Cdrs(catalogue(tmp_path_factory.mktemp("cdr")), US, EMSP).cdr(
        _cdr_payload(tx, _session(evse)), stop
    )
    validate("Cdr", body)
    volumes: dict[str, float] = {}
    for period in body["charging_periods"]:
        for dim in period["dimensions"]:
            volumes[dim["type"]] = volumes.get(dim["type"], 0.0) + dim["volume"]
    # Each volume and total is rounded to 4 decimals (OCPI's numbers): half a unit each.
    half = 0.00005 + 1e-9
    assert volumes["ENERGY"] == body["total_energy"] == round(kwh, 4)
    hours = volumes["TIME"] + volumes.get("PARKING_TIME", 0.0)
    assert abs(hours - body["total_time"]) <= 4 * half
    assert abs(volumes.get("PARKING_TIME", 0.0) - body.get("total_parking_time", 0.0)) <= 3 * half
    starts = [p["start_date_time"] for p in body["charging_periods"]]
    assert starts == sorted(starts) and starts[0] == body["start_date_time"]
    parts = ("total_fixed_cost", "total_energy_cost", "total_time_cost", "total_parking_cost")
    if "tariffs" in body and body["tariffs"][0].get("min_price") is None:
        assert body["total_cost"]["excl_vat"] == pytest.approx(
            sum(body[p]["excl_vat"] for p in parts if p in body), abs=1e-9
        )
