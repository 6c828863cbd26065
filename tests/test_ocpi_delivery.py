"""The outbox's neutral rows delivered to a partner's OCPI receivers: the sandbox eMSP (a
real aiohttp peer on 127.0.0.1:0), registered with the gateway's registrar by a real
credentials handshake over a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.cdr import build_cdr, build_session_update, cdr_to_dict
from cpo_gateway.bridge.model import DeliveryStatus
from cpo_gateway.bridge.owed import Owed, SessionPhase
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.bridge.station_sync import station_payload
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.delivery import OcpiDeliverer
from cpo_gateway.ocpi.reads import StoreReads
from cpo_gateway.ocpi.registration import Identity, PartnerSettings, Registrar
from cpo_gateway.ocpi.server import OcpiServer
from cpo_gateway.ocpi.transport import Party
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from cpo_gateway.sim.ocpi_emsp.sandbox import Fault
from cpo_gateway.store import Store
from tests.ocpi_fixtures import catalogue
from tests.ocpi_models import validate
from tests.storage import make_database
from tests.test_ocpi_sessions_cdrs import START, _session, _tx

OURS = Party("DE", "CPO")
NOW = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)


@dataclass
class Rig:
    store: Store
    emsp: SandboxEmsp
    deliverer: OcpiDeliverer
    registrar: Registrar
    catalogue: Catalogue


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = make_database(tmp_path / "gateway.db")
    await db.open()
    store = Store(db)
    emsp = SandboxEmsp()
    await emsp.start()
    client = OcpiClient(OURS)
    holder: list[OcpiServer] = []
    identity = Identity(OURS, "Test CPO", lambda: holder[0].base_url)
    partner = PartnerSettings("emsp", emsp.versions_url, emsp.token_a, request_timeout_s=5.0)
    registrar = Registrar(store, client, identity, [partner])
    server = OcpiServer(registrar, host="127.0.0.1", port=0, base_url="", ours=OURS)
    holder.append(server)
    await server.start()
    cat = catalogue(tmp_path)
    reads = StoreReads(store, cat, lambda: START - timedelta(days=1))
    deliverer = OcpiDeliverer(client, store, reads, OURS, timeout_s=5.0, clock=lambda: NOW)
    try:
        yield Rig(store, emsp, deliverer, registrar, cat)
    finally:
        await server.close()
        await client.close()
        await emsp.stop()
        await db.close()


async def test_before_registration_rows_are_kept(rig: Rig) -> None:
    delivery = await rig.deliverer.deliver("emsp", Owed.CDR, {})
    assert delivery.status is DeliveryStatus.RETRY and "not registered" in delivery.detail
    assert rig.emsp.received == []


async def test_every_kind_reaches_its_receiver_valid(rig: Rig) -> None:
    await rig.registrar.register("emsp")
    await rig.store.enqueue(
        [
            NewOutbox(
                "emsp",
                Owed.EVSE_STATUS,
                "DE*CPO*E2001",
                {"evse_id": "DE*CPO*E2001", "status": "Occupied", "partner_identifier": "x"},
            )
        ],
        now=START.timestamp(),
    )
    station = rig.catalogue.stations[1]
    tx = _tx(45, 0, 7.25, stopped=False)
    update = build_session_update(
        tx, _session(), "DE*CPO*E1001*1", "x", SessionPhase.STARTED, START.timestamp()
    )
    charging = build_session_update(
        tx, _session(), "DE*CPO*E1001*1", "x", SessionPhase.CHARGING, START.timestamp() + 600
    )
    cdr = cdr_to_dict(build_cdr(_tx(60, 5, 11.0), _session(), "DE*CPO*E1001*1", "x"))
    rows = [
        (Owed.STATION, station_payload(station, "x", False)),
        (
            Owed.EVSE_STATUS,
            {"evse_id": "DE*CPO*E2001", "status": "Offline", "partner_identifier": "x"},
        ),
        (Owed.SESSION, update.to_dict()),
        (Owed.SESSION, charging.to_dict()),
        (Owed.CDR, cdr),
    ]
    for kind, payload in rows:
        delivery = await rig.deliverer.deliver("emsp", kind, payload)
        assert delivery.status is DeliveryStatus.DELIVERED, delivery.detail
    got = [(r.module, r.method, r.path.split("/2.2.1/", 1)[1]) for r in rig.emsp.received]
    assert got == [
        ("locations", "PUT", "locations/DE/CPO/DE-MUC-MAX-01"),
        ("locations", "PATCH", "locations/DE/CPO/DE-MUC-MAX-01/DE*CPO*E2001"),
        ("sessions", "PUT", f"sessions/DE/CPO/{update.session_id}"),
        ("sessions", "PATCH", f"sessions/DE/CPO/{update.session_id}"),
        ("cdrs", "POST", "cdrs"),
    ]
    location, status, session, patch, posted = (r.body for r in rig.emsp.received)
    validate("Location", location)
    assert location["evses"][0]["status"] == "CHARGING"  # as the partner was last told
    assert status == {"status": "UNKNOWN", "last_updated": "2026-03-02T12:30:00Z"}
    validate("Session", session)
    assert patch["kwh"] == 7.25 and patch["status"] == "ACTIVE"
    validate("Cdr", posted)
    assert posted["id"] == cdr["session_id"] and posted["cdr_token"]["party_id"] == "EMS"
    headers = rig.emsp.received[-1].headers
    assert (headers["OCPI-to-party-id"], headers["OCPI-from-party-id"]) == ("EMS", "CPO")


async def test_an_outage_is_retried_and_the_cdr_arrives_once_with_the_same_id(rig: Rig) -> None:
    await rig.registrar.register("emsp")
    cdr = cdr_to_dict(build_cdr(_tx(60, 0, 11.0), _session(), "DE*CPO*E1001*1", "x"))
    for fault in (Fault.ERROR, Fault.HTML):
        rig.emsp.fault = fault
        delivery = await rig.deliverer.deliver("emsp", Owed.CDR, cdr)
        assert delivery.status is DeliveryStatus.RETRY
    assert rig.emsp.received == []
    rig.emsp.fault = Fault.NONE
    assert (await rig.deliverer.deliver("emsp", Owed.CDR, cdr)).status is DeliveryStatus.DELIVERED
    (received,) = rig.emsp.received
    assert received.body["id"] == cdr["session_id"]


async def test_what_ocpi_cannot_tell_is_rejected_and_an_early_cdr_owes_nothing(rig: Rig) -> None:
    await rig.registrar.register("emsp")
    gone = {"evse_id": "DE*CPO*E9999", "status": "Available", "partner_identifier": "x"}
    delivery = await rig.deliverer.deliver("emsp", Owed.EVSE_STATUS, gone)
    assert delivery.status is DeliveryStatus.REJECTED and "DE*CPO*E9999" in delivery.detail
    early = cdr_to_dict(
        build_cdr(_tx(60, 0, 1.0, stopped=False), _session(), "DE*CPO*E1001*1", "x")
    )
    delivery = await rig.deliverer.deliver("emsp", Owed.CDR, early)
    assert delivery.status is DeliveryStatus.DELIVERED and "nothing owed" in delivery.detail
    assert rig.emsp.received == []


async def test_a_patch_the_receiver_refuses_becomes_a_put_of_the_whole_object(rig: Rig) -> None:
    # The session's start (a PUT) was coalesced away by a progress row while the partner
    # was down: the PATCH that arrives first is refused, the whole session is PUT instead.
    await rig.registrar.register("emsp")
    rig.emsp.strict_patch = True
    tx = _tx(45, 0, 7.25, stopped=False)
    charging = build_session_update(
        tx, _session(), "DE*CPO*E1001*1", "x", SessionPhase.CHARGING, START.timestamp() + 600
    )
    delivery = await rig.deliverer.deliver("emsp", Owed.SESSION, charging.to_dict())
    assert delivery.status is DeliveryStatus.DELIVERED
    (put,) = rig.emsp.received
    assert put.method == "PUT" and put.body["kwh"] == 7.25
    validate("Session", put.body)
    # Now the session is known: the next progress is a PATCH again.
    assert (
        await rig.deliverer.deliver("emsp", Owed.SESSION, charging.to_dict())
    ).status is DeliveryStatus.DELIVERED
    assert [r.method for r in rig.emsp.received] == ["PUT", "PATCH"]
    # The same for an EVSE status of a location the partner never got.
    status = {"evse_id": "DE*CPO*E2001", "status": "Available", "partner_identifier": "x"}
    assert (
        await rig.deliverer.deliver("emsp", Owed.EVSE_STATUS, status)
    ).status is DeliveryStatus.DELIVERED
    last = rig.emsp.received[-1]
    assert last.method == "PUT" and last.path.endswith("/locations/DE/CPO/DE-MUC-MAX-01")
    assert last.body["evses"][0]["status"] == "AVAILABLE"
    validate("Location", last.body)


async def test_tariffs_are_put_to_the_partners_tariffs_receiver(rig: Rig) -> None:
    def owed(tariff_id: str, deleted: bool = False) -> dict[str, object]:
        return {"tariff_id": tariff_id, "deleted": deleted}

    assert (await rig.deliverer.deliver("emsp", Owed.TARIFF, owed("AC"))).status is (
        DeliveryStatus.RETRY
    )
    await rig.registrar.register("emsp")
    for tariff_id in ("AC", "DC"):
        delivery = await rig.deliverer.deliver("emsp", Owed.TARIFF, owed(tariff_id))
        assert delivery.status is DeliveryStatus.DELIVERED
    # A tariff removed from the file is deleted; one the file no longer has is not PUT.
    gone = await rig.deliverer.deliver("emsp", Owed.TARIFF, owed("OLD", deleted=True))
    assert gone.status is DeliveryStatus.DELIVERED
    stale = await rig.deliverer.deliver("emsp", Owed.TARIFF, owed("OLD"))
    assert stale.status is DeliveryStatus.DELIVERED and "nothing owed" in stale.detail
    got = [(r.method, r.path.split("/2.2.1/", 1)[1]) for r in rig.emsp.received]
    assert got == [
        ("PUT", "tariffs/DE/CPO/AC"),
        ("PUT", "tariffs/DE/CPO/DC"),
        ("DELETE", "tariffs/DE/CPO/OLD"),
    ]
    for r in rig.emsp.received[:2]:
        validate("Tariff", r.body)
