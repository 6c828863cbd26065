"""The EMP client against the sandbox EMP over real sockets: every answer shape becomes a typed
Delivery, and rfid-verify gives a verdict within its deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from cpo_gateway.bridge.catalogue import Station
from cpo_gateway.bridge.model import DeliveryStatus, VerifyOutcome
from cpo_gateway.bridge.station_sync import station_payload
from cpo_gateway.oioi.client import EmpClients, Endpoint
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.stations import load_stations
from tests.conftest import EXAMPLE_STATIONS, OUTBOUND_KEY, PARTNER

NOW = 1_800_000_000.0


def station() -> Station:
    return load_stations(EXAMPLE_STATIONS).stations[0]


def station_post() -> dict[str, Any]:
    return station_payload(station(), PARTNER, False)


def status_post(status: str = "Available") -> dict[str, Any]:
    evse = station().connectors[0].evse_id
    return {"evse_id": evse, "status": status, "partner_identifier": PARTNER}


@pytest.fixture
async def clients(emp: SandboxEmp) -> AsyncIterator[EmpClients]:
    c = EmpClients(
        [Endpoint("sandbox", emp.url, OUTBOUND_KEY, verify_timeout_s=0.3, request_timeout_s=1.0)],
        clock=lambda: NOW,
    )
    await c.start()
    yield c
    await c.close()


async def test_a_delivered_station_post_reaches_the_emp(
    clients: EmpClients, emp: SandboxEmp
) -> None:
    result = await clients.deliver("sandbox", "station", station_post())
    assert result.status is DeliveryStatus.DELIVERED
    assert (result.http_status, result.code) == (200, 0)
    assert station().id in emp.stations
    assert emp.requests[-1].headers["Authorization"] == f"key={OUTBOUND_KEY}"


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "expected", "delay"),
    [
        (503, 100, "7", DeliveryStatus.RETRY, 7.0),
        (503, 100, format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True),
         DeliveryStatus.RETRY, 90.0),
        (429, 200, None, DeliveryStatus.RETRY, None),
        (408, 102, None, DeliveryStatus.RETRY, None),
        (425, 200, None, DeliveryStatus.RETRY, None),
        (500, 100, None, DeliveryStatus.RETRY, None),
        (502, 300, None, DeliveryStatus.RETRY, None),
        (400, 230, None, DeliveryStatus.REJECTED, None),
        (401, 210, None, DeliveryStatus.UNAUTHORIZED, None),  # our key: the EMP pauses
        (200, 210, None, DeliveryStatus.UNAUTHORIZED, None),
        (403, 220, "5", DeliveryStatus.REJECTED, None),
        (404, 180, None, DeliveryStatus.REJECTED, None),
        (200, 181, None, DeliveryStatus.REJECTED, None),
        (200, 189, None, DeliveryStatus.REJECTED, None),  # unlisted: read as 180
        (200, 102, None, DeliveryStatus.RETRY, None),  # "system timeout" in a 200
        (200, 11, None, DeliveryStatus.DELIVERED, None),  # any 0xx is success
    ],
)  # fmt: skip
async def test_every_answer_shape_is_read(
    clients: EmpClients,
    emp: SandboxEmp,
    status: int,
    code: int,
    retry_after: str | None,
    expected: DeliveryStatus,
    delay: float | None,
) -> None:
    emp.fail_next(1, status, code=code, retry_after=retry_after)
    result = await clients.deliver("sandbox", "evse-status", status_post())
    assert result.status is expected
    assert (result.http_status, result.code) == (status, code)
    assert result.retry_after_s == delay
    assert result.detail.startswith(f"HTTP {status}, code {code}")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (502, b"<html>Bad gateway</html>", DeliveryStatus.RETRY),
        (400, b"", DeliveryStatus.REJECTED),
        (200, b"", DeliveryStatus.RETRY),
        (200, b"<!doctype html><title>Sign in to the network</title>", DeliveryStatus.RETRY),
        (404, b'{"error": {"code": 181, "message": "no such EVSE"}}', DeliveryStatus.REJECTED),
        (200, b'{"result": {"code": "192", "message": "locked"}}', DeliveryStatus.REJECTED),
    ],
)
async def test_bodies_that_are_not_the_usual_result_object(
    clients: EmpClients, emp: SandboxEmp, status: int, body: bytes, expected: DeliveryStatus
) -> None:
    emp.fail_next(1, status, body=body)
    result = await clients.deliver("sandbox", "station", station_post())
    assert result.status is expected
    assert result.http_status == status


async def test_an_unrenderable_row_is_rejected_without_a_request(
    clients: EmpClients, emp: SandboxEmp
) -> None:
    result = await clients.deliver("sandbox", "station", {"station": {}})
    assert result.status is DeliveryStatus.REJECTED and "cannot render" in result.detail
    result = await clients.deliver("sandbox", "cdr-post", {})
    assert result.status is DeliveryStatus.REJECTED
    assert emp.requests == []


async def test_a_large_reply_body_is_read_whole_up_to_the_cap(
    clients: EmpClients, emp: SandboxEmp
) -> None:
    padding = "x" * 200_000  # arrives in several TCP reads
    emp.fail_next(1, 200, body=b'{"pad": "' + padding.encode() + b'", "result": {"code": 181}}')
    result = await clients.deliver("sandbox", "station", station_post())
    assert (result.status, result.code) == (DeliveryStatus.REJECTED, 181)


async def test_connection_errors_and_timeouts_are_retried(
    clients: EmpClients, emp: SandboxEmp
) -> None:
    await emp.refuse()
    result = await clients.deliver("sandbox", "station", station_post())
    assert result.status is DeliveryStatus.RETRY and result.http_status is None
    assert "Connect" in result.detail
    await emp.accept()
    emp.set_delay(3.0)  # beyond the client's 1 s total timeout
    result = await clients.deliver("sandbox", "station", station_post())
    assert result.status is DeliveryStatus.RETRY and "Timeout" in result.detail


# --- rfid-verify ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (0, VerifyOutcome.ACCEPTED),
        (191, VerifyOutcome.UNKNOWN),
        (192, VerifyOutcome.BLOCKED),
        (193, VerifyOutcome.NO_PAYMENT),
    ],
)
async def test_verify_maps_the_emp_codes(
    clients: EmpClients, emp: SandboxEmp, code: int, outcome: VerifyOutcome
) -> None:
    emp.verify_codes = {"0A0B0C0D": code}
    assert await clients.verify("sandbox", "0A0B0C0D") is outcome
    assert emp.calls("rfid-verify")[-1]["rfid"] == "0A0B0C0D"


async def test_verify_of_an_unlisted_uid_is_unknown(clients: EmpClients, emp: SandboxEmp) -> None:
    assert await clients.verify("sandbox", "DEADBEEF") is VerifyOutcome.UNKNOWN


async def test_verify_is_unreachable_on_timeout_5xx_and_refusal(
    clients: EmpClients, emp: SandboxEmp
) -> None:
    emp.verify_codes = {"0A0B0C0D": 0}
    emp.set_delay(0.8)  # beyond the 0.3 s verify deadline, within the 1 s total timeout
    assert await clients.verify("sandbox", "0A0B0C0D") is VerifyOutcome.UNREACHABLE
    emp.set_delay(0.0)
    emp.fail_next(1, 503, retry_after="1")
    assert await clients.verify("sandbox", "0A0B0C0D") is VerifyOutcome.UNREACHABLE
    emp.fail_next(1, 500)
    assert await clients.verify("sandbox", "0A0B0C0D") is VerifyOutcome.UNREACHABLE
    await emp.refuse()
    assert await clients.verify("sandbox", "0A0B0C0D") is VerifyOutcome.UNREACHABLE
    await emp.accept()
    assert await clients.verify("sandbox", "0A0B0C0D") is VerifyOutcome.ACCEPTED


async def test_the_verify_deadline_is_shorter_than_the_delivery_timeout(emp: SandboxEmp) -> None:
    """The deadline is the EMP's verify_timeout_s, not the 30 s of ordinary posts."""
    c = EmpClients([Endpoint("sandbox", emp.url, OUTBOUND_KEY, verify_timeout_s=0.2)])
    await c.start()
    try:
        emp.verify_codes = {"0A0B0C0D": 0}
        emp.set_delay(1.0)
        assert await c.verify("sandbox", "0A0B0C0D") is VerifyOutcome.UNREACHABLE
        # The delivery, with its own longer timeout, waits for the slow answer.
        result = await c.deliver("sandbox", "station", station_post())
        assert result.status is DeliveryStatus.DELIVERED
    finally:
        await c.close()


async def test_each_emp_has_its_own_delivery_timeout(emp: SandboxEmp) -> None:
    """`request_timeout_s` is per EMP: a slow answer is a timeout for one and not the other."""
    c = EmpClients(
        [
            Endpoint("impatient", emp.url, OUTBOUND_KEY, request_timeout_s=0.5),
            Endpoint("patient", emp.url, OUTBOUND_KEY, request_timeout_s=5.0),
        ]
    )
    await c.start()
    try:
        emp.set_delay(1.0)
        impatient = await c.deliver("impatient", "station", station_post())
        assert impatient.status is DeliveryStatus.RETRY and "Timeout" in impatient.detail
        patient = await c.deliver("patient", "station", station_post())
        assert patient.status is DeliveryStatus.DELIVERED
    finally:
        await c.close()
