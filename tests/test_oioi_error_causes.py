"""A business error's message carries the cause its code alone hides (issue 16): which 310,
which EVSE was not found, why an identifier was refused, that the charger did not answer."""

from __future__ import annotations

from typing import Any

from cpo_gateway.sim.charger.simulator import SimCharger
from tests.conftest import Harness

EVSE = "DE*CPO*E1001*1"
EVCO = "DE-8PS-C12345-6"


def result(body: Any) -> tuple[int, str]:
    return int(body["result"]["code"]), str(body["result"]["message"])


async def _available(cp: SimCharger) -> None:
    await cp.connect()
    for connector in (1, 2):
        await cp.status(connector, "Available")


async def test_an_unknown_evse_is_181_naming_it(harness: Harness) -> None:
    async with harness.client() as client:
        status, body = await client.session_start("DE*CPO*E9999*9", EVCO)
    assert status == 200
    assert result(body) == (181, "EVSE not found: unknown EVSE DE*CPO*E9999*9.")


async def test_an_offline_charger_is_310_saying_so(harness: Harness) -> None:
    async with harness.client() as client:
        _, body = await client.session_start(EVSE, EVCO)
    assert result(body) == (310, "EVSE error: the charger is offline.")


async def test_a_rejected_start_is_310_with_the_charger_status(harness: Harness) -> None:
    async with (
        harness.charger("CP-BER-001", remote_start="reject") as cp,
        harness.client() as client,
    ):
        await _available(cp)
        _, body = await client.session_start(EVSE, EVCO)
    code, message = result(body)
    assert code == 310
    assert message == "EVSE error: the charger rejected the command (status Rejected)."


async def test_a_charger_that_does_not_answer_is_312_saying_so(harness: Harness) -> None:
    async with (
        harness.charger("CP-BER-001", remote_start="ignore") as cp,
        harness.client() as client,
    ):
        await _available(cp)
        _, body = await client.session_start(EVSE, EVCO)
    assert result(body) == (312, "EVSE timeout: the charger did not answer in time.")


async def test_a_faulted_evse_is_310_saying_so(harness: Harness) -> None:
    async with harness.charger("CP-BER-001") as cp, harness.client() as client:
        await cp.connect()
        await cp.status(1, "Faulted")
        _, body = await client.session_start(EVSE, EVCO)
    assert result(body) == (310, "EVSE error: the EVSE is faulted or unavailable.")


async def test_a_refused_identifier_is_140_saying_why(harness: Harness) -> None:
    async with harness.charger("CP-BER-001") as cp, harness.client() as client:
        await _available(cp)
        _, body = await client.session_start(EVSE, "not-hex", identifier_type="rfid")
        code, message = result(body)
        assert code == 140
        assert "'not-hex' is not an RFID UID" in message
        _, body = await client.session_start(EVSE, "DE-8PS", identifier_type="evco-id")
        code, message = result(body)
        assert code == 140 and "'DE-8PS' is not an EVCO ID" in message
        _, body = await client.session_start(EVSE, "jane", identifier_type="username")
        code, message = result(body)
        assert code == 140 and "a username cannot start a session" in message
    assert all(action != "RemoteStartTransaction" for action, _ in cp.received)


async def test_a_cause_is_one_bounded_line_of_the_peers_own_input(harness: Harness) -> None:
    """An EVSE id with control characters and of any length comes back cut and on one line."""
    evse = "DE*CPO*\n\x1b[31mE" + "9" * 5000
    async with harness.client() as client:
        _, body = await client.session_start(evse, EVCO)
    code, message = result(body)
    assert code == 181
    assert message.startswith("EVSE not found: unknown EVSE DE*CPO* [31mE999")
    assert message.isprintable() and message.endswith("...") and len(message) < 250
