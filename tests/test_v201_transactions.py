"""2.0.1 TransactionEvent onto the core: card sessions, resent and out-of-order events,
offline events, an Ended without a Started; always with an `ocpp` v201 charger."""

from __future__ import annotations

from tests.charger201 import Memory, charger201, meter, stamp
from tests.conftest import PARTNER, Harness

CP = "CP-BER-001"
EVSE1 = "DE*CPO*E1001*1"
UID = "04A1B2C3D4E5F6"  # an ISO14443 7-byte UID


async def _whitelist(harness: Harness, *uids: str) -> None:
    async with harness.client() as client:
        status, body = await client.rfid_post(PARTNER, list(uids))
        assert status == 200 and body["result"]["code"] == 0, body


async def _cdr_of(harness: Harness, cp: str, key: str) -> dict[str, object]:
    tx = await harness.store.transaction_by_key(cp, key)
    assert tx is not None
    await harness.emp.wait_for(lambda: tx.session_id in harness.emp.cdrs, timeout=10)
    return harness.emp.cdrs[tx.session_id]


async def test_card_session_with_resent_events_is_one_record_and_one_cdr(
    harness: Harness,
) -> None:
    await _whitelist(harness, UID)
    async with charger201(harness.ocpp_url, CP, Memory()) as cp:
        auth = await cp.call_authorize(UID)
        assert auth.id_token_info["status"] == "Accepted"
        for _ in range(2):  # a retry after a lost answer: same seqNo, same content
            started = await cp.event(
                "Started", "T-1", seq=0, token=(UID, "ISO14443"), meter_value=meter(10_000, 1)
            )
            assert started.id_token_info is None or started.id_token_info["status"] == "Accepted"
        for _ in range(2):
            await cp.event(
                "Updated", "T-1", seq=1, trigger="MeterValuePeriodic",
                meter_value=meter(12_000, 300),
            )  # fmt: skip
        for _ in range(3):
            await cp.event(
                "Ended", "T-1", seq=2, trigger="EVCommunicationLost", at=900,
                meter_value=meter(17_500, 900, unit="kWh"), stopped_reason="EVDisconnected",
            )  # fmt: skip
        cdr = await _cdr_of(harness, CP, "T-1")
    assert cdr["connector-id"] == EVSE1
    assert cdr["user"] == {"identifier-type": "rfid", "identifier": UID}
    assert cdr["energy-consumed"] == 7.5
    sessions = [s for s in await harness.store.list_sessions() if s.charge_point == CP]
    assert len(sessions) == 1
    steps = await harness.store.steps_of(CP, "T-1")
    assert [s.sequence for s in steps] == [0, 1, 2]
    assert steps[2].reason == "EVDisconnected"
    posts = [r for r in harness.emp.requests if r.call == "session-post"]
    assert len(posts) == 1


async def test_out_of_order_and_offline_events_keep_the_chargers_times(
    harness: Harness,
) -> None:
    await _whitelist(harness, UID)
    async with charger201(harness.ocpp_url, CP, Memory()) as cp:
        # Held while offline and sent late: the Updated before the Started, then the Ended.
        await cp.event(
            "Updated", "T-9", seq=1, trigger="MeterValuePeriodic", at=600, offline=True,
            token=(UID, "ISO14443"), meter_value=meter(21_000, 600),
        )  # fmt: skip
        await cp.event(
            "Started", "T-9", seq=0, at=5, offline=True, token=(UID, "ISO14443"),
            meter_value=meter(20_000, 5),
        )  # fmt: skip
        await cp.event(
            "Ended", "T-9", seq=2, trigger="StopAuthorized", at=1200, offline=True,
            token=(UID, "ISO14443"), meter_value=meter(22_000, 1200), stopped_reason="Local",
        )  # fmt: skip
        cdr = await _cdr_of(harness, CP, "T-9")
    steps = await harness.store.steps_of(CP, "T-9")
    assert [(s.sequence, s.kind.value) for s in steps] == [
        (0, "started"),
        (1, "updated"),
        (2, "ended"),
    ]
    assert all(s.queued for s in steps)
    assert [s.timestamp for s in steps] == [stamp(5), stamp(600), stamp(1200)]
    tx = await harness.store.transaction_by_key(CP, "T-9")
    assert tx is not None
    assert (tx.first_wh, tx.last_wh) == (20_000, 22_000)
    assert (tx.started_at, tx.stopped_at) == (stamp(5), stamp(1200))
    assert cdr["energy-consumed"] == 2.0


async def test_ended_without_started_becomes_a_session_and_a_cdr(harness: Harness) -> None:
    await _whitelist(harness, UID)
    async with charger201(harness.ocpp_url, CP, Memory()) as cp:
        await cp.event(
            "Ended", "T-lost", seq=7, trigger="StopAuthorized", at=800, evse=1,
            token=(UID, "ISO14443"), meter_value=meter(4000, 800), stopped_reason="Local",
        )  # fmt: skip
        cdr = await _cdr_of(harness, CP, "T-lost")
    assert cdr["connector-id"] == EVSE1
    assert cdr["user"] == {"identifier-type": "rfid", "identifier": UID}
    tx = await harness.store.transaction_by_key(CP, "T-lost")
    assert tx is not None and tx.stopped_at == stamp(800)


async def test_id_token_types_go_through_the_same_chain(harness: Harness) -> None:
    await _whitelist(harness, UID)
    async with charger201(harness.ocpp_url, CP, Memory()) as cp:
        answers = {}
        for type_ in ("ISO14443", "ISO15693", "eMAID", "Central", "Local", "KeyCode"):
            answers[type_] = (await cp.call_authorize(UID, type_)).id_token_info["status"]
        unknown = (await cp.call_authorize("FFFFFFFF", "ISO14443")).id_token_info["status"]
    assert set(answers.values()) == {"Accepted"}, answers
    assert unknown != "Accepted"


async def test_charging_state_feeds_the_connectors_state(harness: Harness) -> None:
    await _whitelist(harness, UID)
    async with charger201(harness.ocpp_url, CP, Memory()) as cp:
        await cp.status(1, "Occupied", at=1)
        await cp.event(
            "Started", "T-5", seq=0, at=2, token=(UID, "ISO14443"), charging_state="Charging"
        )
        charging = (await harness.store.connector_states())[(CP, 1)]
        await cp.event(
            "Updated", "T-5", seq=1, at=300, trigger="ChargingStateChanged",
            charging_state="SuspendedEV",
        )  # fmt: skip
        suspended = (await harness.store.connector_states())[(CP, 1)]
        # An Occupied while the transaction runs keeps what the transaction said.
        await cp.status(1, "Occupied", at=400)
        still = (await harness.store.connector_states())[(CP, 1)]
        await cp.event(
            "Updated", "T-5", seq=2, at=500, trigger="ChargingStateChanged",
            charging_state="SuspendedEVSE",
        )  # fmt: skip
        evse_side = (await harness.store.connector_states())[(CP, 1)]
    assert (charging, suspended, still, evse_side) == (
        "Charging", "SuspendedEV", "SuspendedEV", "SuspendedEVSE",
    )  # fmt: skip


async def test_a_started_after_an_updated_without_id_token_names_who_is_billed(
    harness: Harness,
) -> None:
    await _whitelist(harness, UID)
    async with charger201(harness.ocpp_url, CP, Memory()) as cp:
        # Begun by an Updated that names no one; its Started, sent late, carries the card.
        await cp.event(
            "Updated", "T-7", seq=1, trigger="MeterValuePeriodic", at=300,
            meter_value=meter(31_000, 300),
        )  # fmt: skip
        started = await cp.event(
            "Started", "T-7", seq=0, at=5, token=(UID, "ISO14443"), meter_value=meter(30_000, 5)
        )
        again = await cp.event(
            "Started", "T-7", seq=0, at=5, token=(UID, "ISO14443"), meter_value=meter(30_000, 5)
        )
        await cp.event(
            "Ended", "T-7", seq=2, trigger="StopAuthorized", at=900,
            meter_value=meter(33_000, 900), stopped_reason="Local",
        )  # fmt: skip
        cdr = await _cdr_of(harness, CP, "T-7")
    assert started.id_token_info is not None and started.id_token_info["status"] == "Accepted"
    assert again.id_token_info is None  # resent: already identified, nothing changes
    assert cdr["user"] == {"identifier-type": "rfid", "identifier": UID}
    assert cdr["partner-identifier"] == PARTNER
    sessions = [s for s in await harness.store.list_sessions() if s.charge_point == CP]
    assert [(s.id_tag, s.auth_status, s.auth_path) for s in sessions] == [
        (UID, "Accepted", "whitelist")
    ]
    assert sessions[0].emp is not None
