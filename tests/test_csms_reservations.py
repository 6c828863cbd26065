"""ReserveNow and CancelReservation to OCPP 1.6 chargers: the builders, the charger's
Reservation profile read from SupportedFeatureProfiles, and each answer's meaning, against
the simulated charger on a running gateway."""

from __future__ import annotations

import pytest

from cpo_gateway.bridge.model import CommandStatus
from cpo_gateway.csms import v16_commands as cmd
from cpo_gateway.csms.reservations import lists_reservation
from tests.conftest import Harness
from tests.test_csms_support import CP, eventually

TAG = "04A2B3C4"
EXPIRY = "2030-01-01T12:00:00Z"


def test_builders_refuse_what_the_schema_refuses() -> None:
    assert cmd.reserve_now_req(1, EXPIRY, TAG, 7) == {
        "connectorId": 1,
        "expiryDate": EXPIRY,
        "idTag": TAG,
        "reservationId": 7,
    }
    assert cmd.cancel_reservation_req(7) == {"reservationId": 7}
    with pytest.raises(ValueError, match="reservationId"):
        cmd.reserve_now_req(1, EXPIRY, TAG, 2**31)
    with pytest.raises(ValueError, match="idTag"):
        cmd.reserve_now_req(1, EXPIRY, "X" * 21, 1)
    with pytest.raises(ValueError, match="connectorId"):
        cmd.reserve_now_req(-1, EXPIRY, TAG, 1)


def test_profiles_list_is_read_case_and_space_insensitively() -> None:
    assert lists_reservation("Core, reservation ,SmartCharging")
    assert not lists_reservation("Core,LocalAuthListManagement")
    assert not lists_reservation("Core,Reservations")


async def test_reserve_then_cancel_on_a_charger_with_the_profile(harness: Harness) -> None:
    reg = harness.csms.registry
    async with harness.charger(CP) as charger:
        await charger.connect()
        assert await reg.reservation_supported(CP) is True
        result = await reg.reserve_now(CP, 1, EXPIRY, TAG, 11)
        assert result.status is CommandStatus.ACCEPTED
        sent = [p for a, p in charger.received if a == "ReserveNow"]
        assert sent == [{"connectorId": 1, "expiryDate": EXPIRY, "idTag": TAG, "reservationId": 11}]
        await eventually(lambda: charger.state.connector_status[1] == "Reserved")
        # The same connector cannot be reserved twice under another id.
        again = await reg.reserve_now(CP, 1, EXPIRY, TAG, 12)
        assert again.status is CommandStatus.OCCUPIED
        assert (await reg.cancel_reservation(CP, 11)).status is CommandStatus.ACCEPTED
        await eventually(lambda: charger.state.connector_status[1] == "Available")
        unknown = await reg.cancel_reservation(CP, 11)
        assert unknown.status is CommandStatus.REJECTED


async def test_busy_and_broken_connectors_are_told_apart(harness: Harness) -> None:
    reg = harness.csms.registry
    async with harness.charger(CP) as charger:
        await charger.connect()
        await charger.start_transaction(1, TAG, meter_start=0)
        assert (await reg.reserve_now(CP, 1, EXPIRY, TAG, 1)).status is CommandStatus.OCCUPIED
        await charger.status(2, "Faulted")
        result = await reg.reserve_now(CP, 2, EXPIRY, TAG, 2)
        assert result.status is CommandStatus.INOPERATIVE
        assert result.data["status"] == "Faulted"


async def test_a_charger_without_the_profile_gets_no_reservation(harness: Harness) -> None:
    reg = harness.csms.registry
    async with harness.charger(CP, reservation_supported=False) as charger:
        await charger.connect()
        assert await reg.reservation_supported(CP) is False
        result = await reg.reserve_now(CP, 1, EXPIRY, TAG, 3)
        assert result.status is CommandStatus.NOT_SUPPORTED
        assert not [a for a, _ in charger.received if a == "ReserveNow"]
        # Asked once per connection, however many commands follow.
        await reg.cancel_reservation(CP, 3)
        asked = [p for a, p in charger.received if a == "GetConfiguration"]
        assert asked.count({"key": ["SupportedFeatureProfiles"]}) == 1


async def test_offline_charger(harness: Harness) -> None:
    reg = harness.csms.registry
    assert await reg.reservation_supported(CP) is None
    result = await reg.reserve_now(CP, 1, EXPIRY, TAG, 4)
    assert result.status is CommandStatus.OFFLINE
