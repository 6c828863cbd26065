"""Each OCPP 1.6 message a charger sends, through a real socket, with what was stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER, Harness, running_gateway
from tests.test_csms_support import CP, TS, RawCharger, config, running

TAG = "04A2B3C4"


@pytest.fixture
async def h(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[Harness]:
    async with running(config(tmp_path, emp), emp) as harness:
        yield harness


@pytest.fixture
async def raw(h: Harness) -> AsyncIterator[RawCharger]:
    async with RawCharger.open(h.ocpp_url, CP) as charger:
        yield charger


async def result(raw: RawCharger, action: str, payload: dict[str, object]) -> dict[str, Any]:
    frame = await raw.call(action, payload)
    assert frame[0] == 3, frame
    answer = frame[2]
    assert isinstance(answer, dict)
    return answer


async def start(raw: RawCharger, tag: str = TAG, meter: int = 1000) -> int:
    answer = await result(
        raw,
        "StartTransaction",
        {"connectorId": 1, "idTag": tag, "meterStart": meter, "timestamp": TS},
    )
    tx = answer["transactionId"]
    assert isinstance(tx, int) and tx > 0
    return tx


def iso(value: object) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_boot_notification(h: Harness, raw: RawCharger) -> None:
    answer = await result(
        raw,
        "BootNotification",
        {"chargePointVendor": "ACME", "chargePointModel": "Wallbox", "firmwareVersion": "1.2"},
    )
    assert answer["status"] == "Accepted"
    assert answer["interval"] == h.gateway.config.ocpp.heartbeat_interval_s
    assert iso(answer["currentTime"]).tzinfo is not None
    row = await h.store.db.one("SELECT vendor, model, firmware FROM chargers WHERE id = ?", (CP,))
    assert row is not None and tuple(row) == ("ACME", "Wallbox", "1.2")


async def test_heartbeat(raw: RawCharger) -> None:
    assert iso((await result(raw, "Heartbeat", {}))["currentTime"]).tzinfo is not None


async def test_status_notification(h: Harness, raw: RawCharger) -> None:
    payload = {"connectorId": 2, "errorCode": "NoError", "status": "Charging", "timestamp": TS}
    assert await result(raw, "StatusNotification", payload) == {}
    row = await h.store.db.one(
        "SELECT state, reported_at FROM connector_status WHERE charge_point = ? AND connector = 2",
        (CP,),
    )
    assert row is not None and tuple(row) == ("Charging", TS)


async def test_authorize(h: Harness, raw: RawCharger) -> None:
    async with h.client() as client:
        status, _ = await client.rfid_post(PARTNER, [TAG])
        assert status == 200
    accepted = await result(raw, "Authorize", {"idTag": TAG.lower()})
    assert accepted["idTagInfo"]["status"] == "Accepted"
    assert "expiryDate" in accepted["idTagInfo"]
    invalid = await result(raw, "Authorize", {"idTag": "not a card"})
    assert invalid["idTagInfo"]["status"] == "Invalid"


async def test_start_transaction_without_boot(h: Harness, raw: RawCharger) -> None:
    tx = await start(raw)
    row = await h.store.db.one("SELECT charge_point, connector, id_tag FROM transactions "
                               "WHERE id = ?", (tx,))  # fmt: skip
    assert row is not None and tuple(row) == (CP, 1, TAG)


async def test_stop_transaction_with_data_reason_and_no_id_tag(h: Harness, raw: RawCharger) -> None:
    tx = await start(raw, meter=1000)
    data = [
        {"timestamp": "2024-05-01T10:20:00Z", "sampledValue": [{"value": "1.5", "unit": "kWh"}]},
        {"timestamp": "2024-05-01T10:30:00Z", "sampledValue": [{"value": "4000"}]},
    ]
    payload = {
        "transactionId": tx,
        "meterStop": 4000,
        "timestamp": "2024-05-01T10:30:00Z",
        "reason": "EVDisconnected",
        "transactionData": data,
    }
    assert await result(raw, "StopTransaction", payload) == {}  # no idTag: no idTagInfo
    row = await h.store.db.one("SELECT * FROM transactions WHERE id = ?", (tx,))
    assert row is not None
    assert row["stop_reason"] == "EVDisconnected"
    assert row["stopped_at"] == "2024-05-01T10:30:00Z"
    assert (row["meter_start_wh"], row["meter_stop_wh"], row["last_wh"]) == (1000, 4000, 4000)
    assert row["charge_start_at"] == TS
    with_tag = await result(
        raw,
        "StopTransaction",
        {"transactionId": tx, "meterStop": 4000, "timestamp": "2024-05-01T10:30:00Z",
         "idTag": TAG},
    )  # fmt: skip
    info = with_tag["idTagInfo"]
    # The tag is in no whitelist and the sandbox EMP does not know it.
    assert isinstance(info, dict) and info["status"] == "Invalid"


@pytest.mark.parametrize(
    ("sampled", "wh"),
    [
        ({"value": "2500", "unit": "Wh"}, 2500.0),
        ({"value": "2.5", "unit": "kWh"}, 2500.0),
        ({"value": "2500"}, 2500.0),  # no unit: Wh
    ],
)
async def test_meter_values_for_a_transaction(
    h: Harness, raw: RawCharger, sampled: dict[str, str], wh: float
) -> None:
    tx = await start(raw, meter=1000)
    payload = {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [{"timestamp": "2024-05-01T10:16:00Z", "sampledValue": [sampled]}],
    }
    assert await result(raw, "MeterValues", payload) == {}
    row = await h.store.db.one("SELECT last_wh, last_wh_at FROM transactions WHERE id = ?", (tx,))
    assert row is not None and tuple(row) == (wh, "2024-05-01T10:16:00Z")


async def test_clock_aligned_meter_values(h: Harness, raw: RawCharger) -> None:
    payload = {
        "connectorId": 0,
        "meterValue": [
            {
                "timestamp": TS,
                "sampledValue": [{"value": "99", "context": "Sample.Clock", "unit": "kWh"}],
            }
        ],
    }
    assert await result(raw, "MeterValues", payload) == {}
    row = await h.store.db.one("SELECT COUNT(*) FROM transactions")
    assert row is not None and row[0] == 0


async def test_data_transfer(raw: RawCharger) -> None:
    answer = await result(raw, "DataTransfer", {"vendorId": "com.acme", "data": {"k": 1}})
    assert answer == {"status": "UnknownVendorId"}


async def test_diagnostics_status_notification(h: Harness, raw: RawCharger) -> None:
    assert await result(raw, "DiagnosticsStatusNotification", {"status": "Uploaded"}) == {}
    assert h.csms.handlers.counts["DiagnosticsStatusNotification"] == 1


async def test_firmware_status_notification(h: Harness, raw: RawCharger) -> None:
    assert await result(raw, "FirmwareStatusNotification", {"status": "Installed"}) == {}
    assert h.csms.handlers.counts["FirmwareStatusNotification"] == 1


async def test_answers_carry_the_gateways_injected_clock(tmp_path: Path, emp: SandboxEmp) -> None:
    """The times in our answers come from the gateway's clock, as the core's do: a gateway
    on a fixed clock answers with that time, whatever the machine's clock says."""
    fixed = 1_767_268_800.0  # 2026-01-01T12:00:00Z
    gateway = Gateway(config(tmp_path, emp), clock=lambda: fixed)
    async with (
        running_gateway(gateway, emp) as harness,
        RawCharger.open(harness.ocpp_url, CP) as charger,
    ):
        boot = await result(
            charger,
            "BootNotification",
            {"chargePointVendor": "ACME", "chargePointModel": "Wallbox"},
        )
        assert boot["currentTime"] == "2026-01-01T12:00:00Z"
        assert (await result(charger, "Heartbeat", {}))["currentTime"] == boot["currentTime"]
        answer = await result(charger, "Authorize", {"idTag": TAG})
        expiry = fixed + gateway.config.sessions.id_tag_expiry_s
        assert iso(answer["idTagInfo"]["expiryDate"]).timestamp() == expiry
