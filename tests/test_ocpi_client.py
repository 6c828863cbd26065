"""The OCPI client against the sandbox eMSP's receivers (real sockets): what counts as a
delivery, the headers it sends, and the partner's timeout."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from cpo_gateway.bridge.model import DeliveryStatus
from cpo_gateway.ocpi.client import OcpiCallFailed, OcpiClient, delivery_of
from cpo_gateway.ocpi.transport import Party
from cpo_gateway.sim.ocpi_emsp import Fault, Registration, SandboxEmsp

OURS = Party("DE", "CPO")
THEM = Party("NL", "EMS")


@pytest.fixture
async def emsp() -> AsyncIterator[SandboxEmsp]:
    async with SandboxEmsp() as sandbox:
        # as if the CPO had registered: the token the CPO calls it with
        sandbox.registration = Registration(token_ours="token-for-the-cpo")
        yield sandbox


@pytest.fixture
async def client() -> AsyncIterator[OcpiClient]:
    c = OcpiClient(OURS)
    yield c
    await c.close()


def _url(emsp: SandboxEmsp) -> str:
    return f"{emsp.base}/2.2.1/locations/DE/CPO/LOC1"


async def test_a_delivery_carries_token_ids_and_routing(
    emsp: SandboxEmsp, client: OcpiClient
) -> None:
    reply = await client.request("PUT", _url(emsp), "token-for-the-cpo", {"id": "LOC1"}, to=THEM)
    assert delivery_of(reply).status is DeliveryStatus.DELIVERED
    got = emsp.received[-1]
    assert got.method == "PUT" and got.body == {"id": "LOC1"} and got.module == "locations"
    auth = got.headers["Authorization"]
    assert auth == "Token " + base64.b64encode(b"token-for-the-cpo").decode()
    assert got.headers["OCPI-to-party-id"] == "EMS" and got.headers["OCPI-from-party-id"] == "CPO"
    assert got.headers["X-Request-ID"] == got.headers["X-Correlation-ID"]


@pytest.mark.parametrize(
    ("fault", "status", "detail"),
    [
        (Fault.HTML, DeliveryStatus.RETRY, "HTML"),
        (Fault.ERROR, DeliveryStatus.RETRY, "HTTP 500"),
    ],
)
async def test_a_broken_answer_is_not_a_delivery(
    emsp: SandboxEmsp, client: OcpiClient, fault: Fault, status: DeliveryStatus, detail: str
) -> None:
    emsp.fault = fault
    delivery = delivery_of(await client.request("PUT", _url(emsp), "token-for-the-cpo", {}))
    assert delivery.status is status and detail in delivery.detail
    assert emsp.received == []
    with pytest.raises(OcpiCallFailed):
        await client.call("PUT", _url(emsp), "token-for-the-cpo", {})


async def test_a_wrong_token_is_unauthorized(emsp: SandboxEmsp, client: OcpiClient) -> None:
    delivery = delivery_of(await client.request("PUT", _url(emsp), "stale-token", {}))
    assert delivery.status is DeliveryStatus.UNAUTHORIZED and emsp.refused == 1


async def test_a_slow_partner_times_out_after_its_timeout(
    emsp: SandboxEmsp, client: OcpiClient
) -> None:
    emsp.fault = Fault.SLOW
    emsp.slow_s = 30.0
    with pytest.raises(OcpiCallFailed) as caught:
        await client.request("PUT", _url(emsp), "token-for-the-cpo", {}, timeout_s=0.3)
    assert "Timeout" in caught.value.detail
