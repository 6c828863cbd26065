"""The Sender GET endpoints over HTTP: the gateway's OCPI listener (real aiohttp on
127.0.0.1:0) with the locations, tariffs, sessions and CDRs modules reading a real SQLite
store, called by the sandbox eMSP after a real credentials handshake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cpo_gateway.bridge.cdr import build_cdr, build_session_update, cdr_to_dict
from cpo_gateway.bridge.owed import Owed, SessionPhase
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.reads import StoreReads
from cpo_gateway.ocpi.registration import Identity, PartnerSettings, Registrar
from cpo_gateway.ocpi.sender_api import CdrsApi, LocationsApi, sender_modules
from cpo_gateway.ocpi.server import OcpiModule, OcpiServer
from cpo_gateway.ocpi.transport import Party, encode_token
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from cpo_gateway.store import Store
from tests.ocpi_fixtures import catalogue
from tests.ocpi_models import validate
from tests.storage import make_database
from tests.test_ocpi_sessions_cdrs import START, _session, _tx

OURS = Party("DE", "CPO")
LOADED = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class Rig:
    store: Store
    server: OcpiServer
    token: str  # the eMSP's token B: how it calls us

    def url(self, rest: str) -> str:
        return f"{self.server.base_url}/2.2.1/{rest}"

    async def get(self, rest: str) -> tuple[int, dict[str, Any], Any]:
        headers = {"Authorization": encode_token(self.token)}
        async with (
            aiohttp.ClientSession() as http,
            http.get(rest if rest.startswith("http") else self.url(rest), headers=headers) as r,
        ):
            return r.status, dict(r.headers), await r.json()


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
    reads = StoreReads(store, catalogue(tmp_path), lambda: LOADED)

    def base() -> str:
        return holder[0].base_url

    modules: list[OcpiModule] = [
        LocationsApi(reads, OURS, base, business_name="Test CPO", max_limit=50),
        *sender_modules(reads, OURS, base)[1:3],  # tariffs, sessions
        CdrsApi(reads, OURS, base, max_limit=2),
    ]
    server = OcpiServer(
        registrar, host="127.0.0.1", port=0, base_url="", ours=OURS, modules=modules
    )
    holder.append(server)
    await server.start()
    try:
        await registrar.register("emsp")
        assert emsp.registration is not None
        yield Rig(store, server, emsp.registration.token_theirs)
    finally:
        await server.close()
        await client.close()
        await emsp.stop()
        await db.close()


async def test_locations_list_pages_with_link_total_and_limit(rig: Rig) -> None:
    await rig.store.enqueue(
        [
            NewOutbox(
                "emsp",
                Owed.EVSE_STATUS,
                "DE*CPO*E2001",
                {"evse_id": "DE*CPO*E2001", "status": "Occupied", "partner_identifier": "x"},
            )
        ],
        now=LOADED.timestamp() + 60,
    )
    status, headers, body = await rig.get("locations")
    assert status == 200 and body["status_code"] == 1000
    assert headers["X-Total-Count"] == "2" and headers["X-Limit"] == "50" and "Link" not in headers
    for loc in body["data"]:
        validate("Location", loc)
    assert body["data"][1]["evses"][0]["status"] == "CHARGING"
    assert body["data"][0]["evses"][0]["status"] == "UNKNOWN"  # never reported
    status, headers, first = await rig.get("locations?limit=1")
    assert [d["id"] for d in first["data"]] == ["DE-BER-ALEX-01"] and headers["X-Limit"] == "1"
    link = headers["Link"]
    assert link == f'<{rig.url("locations")}?offset=1&limit=1>; rel="next"'
    status, headers, second = await rig.get(link[1 : link.index(">")])
    assert [d["id"] for d in second["data"]] == ["DE-MUC-MAX-01"] and "Link" not in headers


async def test_single_location_evse_and_connector_and_unknown_ones(rig: Rig) -> None:
    _, _, loc = await rig.get("locations/DE-MUC-MAX-01")
    validate("Location", loc["data"])
    _, _, evse = await rig.get("locations/DE-MUC-MAX-01/DE*CPO*E2001")
    validate("Evse", evse["data"])
    _, _, conn = await rig.get("locations/DE-MUC-MAX-01/DE*CPO*E2001/2")
    validate("Connector", conn["data"])
    assert conn["data"]["standard"] == "CHADEMO"
    for rest, field in (
        ("locations/NOPE", "location_id"),
        ("locations/DE-MUC-MAX-01/DE*CPO*E1001*1", "evse_uid"),
        ("locations/DE-MUC-MAX-01/DE*CPO*E2001/3", "connector_id"),
    ):
        status, _, body = await rig.get(rest)
        assert status == 404 and body["status_code"] == 2003
        assert body["status_message"].startswith(field)


async def test_tariffs_list(rig: Rig) -> None:
    _, headers, body = await rig.get("tariffs")
    assert [t["id"] for t in body["data"]] == ["AC", "DC"] and headers["X-Total-Count"] == "2"
    for tariff in body["data"]:
        validate("Tariff", tariff)
        assert tariff["last_updated"] == "2026-03-01T10:00:00Z"


def _cdr(session_id: str, minutes: int) -> dict[str, Any]:
    session = replace(_session(), id=session_id)
    return cdr_to_dict(build_cdr(_tx(minutes, 0, minutes / 6), session, "DE*CPO*E1001*1", "NL*EMS"))


async def test_cdrs_list_only_the_partners_own_paged_and_filtered_by_date(rig: Rig) -> None:
    day = START.timestamp()
    for i in range(5):
        row = NewOutbox("emsp", Owed.CDR, f"cdr-{i}", _cdr(f"cdr-{i}", 30 + i))
        await rig.store.enqueue([row], now=day + i * 3600)
    await rig.store.enqueue([NewOutbox("other", Owed.CDR, "theirs", _cdr("theirs", 30))], now=day)
    _, headers, body = await rig.get("cdrs")
    assert [c["id"] for c in body["data"]] == ["cdr-0", "cdr-1"]
    assert headers["X-Total-Count"] == "5" and headers["X-Limit"] == "2"  # the server's maximum
    for cdr in body["data"]:
        validate("Cdr", cdr)
        assert cdr["cdr_token"]["party_id"] == "EMS"  # the caller's party
    frm = (START + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    to = (START + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, headers, body = await rig.get(f"cdrs?date_from={frm}&date_to={to}&limit=1")
    assert [c["id"] for c in body["data"]] == ["cdr-2"] and headers["X-Total-Count"] == "2"
    link = headers["Link"]
    assert f"date_from={frm.replace(':', '%3A')}" in link and "offset=1" in link
    _, headers, body = await rig.get(link[1 : link.index(">")])
    assert [c["id"] for c in body["data"]] == ["cdr-3"] and "Link" not in headers
    _, headers, body = await rig.get("cdrs?offset=9")
    assert body["data"] == [] and headers["X-Total-Count"] == "5" and "Link" not in headers


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("offset=-1", "offset"),
        ("limit=ten", "limit"),
        ("date_from=yesterday", "date_from"),
        ("date_from=2026-03-02T10:00:00Z&date_to=2026-03-01T10:00:00Z", "date_to"),
    ],
)
async def test_bad_pagination_parameters_are_2001_naming_them(
    rig: Rig, query: str, parameter: str
) -> None:
    status, _, body = await rig.get(f"cdrs?{query}")
    assert status == 400 and body["status_code"] == 2001
    assert body["status_message"].startswith(parameter + ":")


async def test_sessions_list_shows_the_newest_update_of_each_session(rig: Rig) -> None:
    tx = _tx(60, 0, 10.0, stopped=False)
    base = START.timestamp()
    for minutes, phase in ((0, SessionPhase.STARTED), (30, SessionPhase.CHARGING)):
        update = build_session_update(
            tx, _session(), "DE*CPO*E1001*1", "NL*EMS", phase, base + minutes * 60
        )
        key = update.session_id
        await rig.store.enqueue(
            [NewOutbox("emsp", Owed.SESSION, key, update.to_dict())], now=base + minutes * 60
        )
    _, headers, body = await rig.get("sessions")
    assert headers["X-Total-Count"] == "1"
    (session,) = body["data"]
    validate("Session", session)
    assert session["status"] == "ACTIVE" and session["last_updated"] == "2026-03-02T09:30:00Z"
