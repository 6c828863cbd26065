"""Signed meter readings reach the partner's CDR: a 1.6 charger's SignedData values and a
2.0.1 charger's signedMeterValue, the first as Start and the last as End; a blob too long
for a CDR is dropped and the transaction message still answered."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from cpo_gateway.bridge.cdr import cdr_from_dict, cdr_to_dict
from cpo_gateway.bridge.model import Cdr, Interval, SignedReading, User, UserKind
from cpo_gateway.oioi.render import render_cdr
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from tests.charger201 import charger201, stamp
from tests.conftest import Harness
from tests.ocpi_gateway_support import registered_with_emsp, until
from tests.ocpi_models import validate

CARD = "0C0C0C0C"
REGISTER = "Energy.Active.Import.Register"


def ocmf(wh: int, context: str) -> str:
    """An OCMF blob as an Eichrecht meter sends it (payload, then signature)."""
    return (
        f'OCMF|{{"FV":"1.0","GI":"SIM","RD":[{{"TX":"{context}","RV":{wh / 1000},'
        f'"RI":"1-b:1.8.0","RU":"kWh"}}]}}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"3045{wh:08x}"}}'
    )


@pytest.fixture
async def gw(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[tuple[Harness, SandboxEmsp]]:
    async with registered_with_emsp(tmp_path, emp, card=CARD) as pair:
        yield pair


async def test_a_16_chargers_first_and_last_signed_readings_are_the_cdrs_start_and_end(
    gw: tuple[Harness, SandboxEmsp],
) -> None:
    h, emsp = gw
    begin, middle, end = ocmf(1000, "T"), ocmf(7000, "P"), ocmf(13_000, "E")
    async with h.charger("CP-MUC-DC1") as cp:
        await cp.connect()
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        tx = await cp.start_transaction(1, CARD, meter_start=1000, timestamp=an_hour_ago)
        for wh, minutes, blob, context in (
            (1000, 0, begin, "Transaction.Begin"),
            (7000, 30, middle, "Sample.Periodic"),
        ):
            await cp.meter_values(
                1,
                tx,
                wh,
                an_hour_ago + timedelta(minutes=minutes),
                extra_samples=False,
                context=context,
                signed=blob,
            )
        await cp.stop_transaction(tx, 13_000, signed=end)
        await until(lambda: emsp.cdrs, "the CDR POST")
    (cdr,) = emsp.cdrs.values()
    validate("Cdr", cdr)
    assert cdr["signed_data"] == {
        "encoding_method": "OCMF",
        "signed_values": [
            {"nature": "Start", "plain_data": "1000", "signed_data": begin},
            {"nature": "End", "plain_data": "13000", "signed_data": end},
        ],
    }
    assert cdr["total_energy"] == pytest.approx(12.0)


async def test_an_over_long_blob_is_dropped_and_the_stop_still_answered(
    gw: tuple[Harness, SandboxEmsp],
) -> None:
    h, emsp = gw
    async with h.charger("CP-MUC-DC1") as cp:
        await cp.connect()
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        tx = await cp.start_transaction(1, CARD, meter_start=1000, timestamp=an_hour_ago)
        conf = await cp.stop_transaction(tx, 13_000, signed="OCMF|" + "x" * 5000)
        assert conf is not None  # answered, not refused (a refusal raises)
        await until(lambda: emsp.cdrs, "the CDR POST")
    (cdr,) = emsp.cdrs.values()
    validate("Cdr", cdr)
    assert "signed_data" not in cdr
    assert cdr["total_energy"] == pytest.approx(12.0)


def _signed_meter(wh: float, at: float, blob: str | None, key: str = "") -> list[dict[str, Any]]:
    sample: dict[str, Any] = {"value": wh, "measurand": REGISTER}
    if blob is not None:
        sample["signed_meter_value"] = {
            "signed_meter_data": blob,
            "signing_method": "ECDSA-secp256r1-SHA256",
            "encoding_method": "OCMF",
            "public_key": key,
        }
    return [{"timestamp": stamp(at), "sampled_value": [sample]}]


async def test_a_201_chargers_signed_meter_values_carry_its_public_key(
    gw: tuple[Harness, SandboxEmsp],
) -> None:
    h, emsp = gw
    key = "3059301306072a8648ce3d020106082a8648ce3d03010703420004" + "ab" * 32
    begin, end = ocmf(2000, "B"), ocmf(9000, "E")
    async with charger201(h.ocpp_url, "CP-BER-001") as cp:
        await cp.event(
            "Started",
            "T-S1",
            seq=0,
            at=60,
            token=(CARD, "ISO14443"),
            meter_value=_signed_meter(2000, 60, begin, key),
        )
        await cp.event("Updated", "T-S1", seq=1, at=600, meter_value=_signed_meter(5000, 600, None))
        await cp.event(
            "Ended",
            "T-S1",
            seq=2,
            at=3600,
            trigger="EVDeparted",
            token=(CARD, "ISO14443"),
            meter_value=_signed_meter(9000, 3600, end, key),
            stopped_reason="EVDisconnected",
        )
        await until(lambda: emsp.cdrs, "the CDR POST")
    (cdr,) = emsp.cdrs.values()
    validate("Cdr", cdr)
    assert cdr["signed_data"] == {
        "encoding_method": "OCMF",
        "public_key": key,
        "signed_values": [
            {"nature": "Start", "plain_data": "2000", "signed_data": begin},
            {"nature": "End", "plain_data": "9000", "signed_data": end},
        ],
    }
    assert cdr["total_energy"] == pytest.approx(7.0)


def test_the_oioi_session_post_is_the_same_with_signed_readings() -> None:
    # Only OCPI has a place for them: OIOI's session-post does not change by a byte.
    cdr = Cdr(
        session_id="s-1",
        evse_id="DE*CPO*E1001*1",
        user=User(UserKind.RFID, CARD),
        session_interval=Interval("2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z"),
        partner_identifier="sandbox",
        energy_kwh=12.0,
    )
    readings = (
        SignedReading(ocmf(1000, "B"), "1000", "OCMF", nature="Start"),
        SignedReading(ocmf(13_000, "E"), "13000", "OCMF", nature="End"),
    )
    signed = cdr_from_dict(cdr_to_dict(dataclasses.replace(cdr, signed=readings)))
    assert signed.signed == readings
    assert orjson.dumps(render_cdr(signed)) == orjson.dumps(render_cdr(cdr))
