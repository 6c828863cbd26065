"""The core end to end over real sockets: remote start/stop outcomes, authorization chain,
whitelist reaching chargers, two EMPs that only see their own sessions and CDRs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from websockets.typing import Subprotocol

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.model import AuthPath, AuthStatus
from cpo_gateway.config import load_config
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from tests.conftest import write_config

EVSE = "DE*CPO*E1001*1"
EVCO_A = "DE-8PS-C12345-6"
EVCO_B = "DE*ABC*C65432*1"
CARD = "04523022AA4881"


@dataclass
class Partner:
    name: str
    inbound: str
    partner_id: str
    emp: SandboxEmp


@dataclass
class World:
    gateway: Gateway
    a: Partner
    b: Partner
    offset: list[float] = field(default_factory=lambda: [0.0])

    @property
    def ocpp_url(self) -> str:
        assert self.gateway.csms is not None
        return f"ws://127.0.0.1:{self.gateway.csms.port}/ocpp"

    @property
    def oioi_url(self) -> str:
        assert self.gateway.oioi is not None
        return f"http://127.0.0.1:{self.gateway.oioi.port}/api/v4/request"

    def client(self, p: Partner) -> EmpClient:
        return EmpClient(self.oioi_url, p.inbound)

    def charger(self, cp_id: str, **kw: Any) -> SimCharger:
        return SimCharger(cp_id, self.ocpp_url, call_timeout=10, **kw)


def _emp_table(name: str, url: str, inbound: str, partner: str, online: bool, policy: str) -> str:
    return f"""
        [[emp]]
        name = "{name}"
        url = "{url}"
        api_key = "out-{name}-key"
        inbound_api_key = "{inbound}"
        partner_identifier = "{partner}"
        online_authorization = {str(online).lower()}
        offline_policy = "{policy}"
        verify_timeout_s = 0.5
    """


@contextlib.asynccontextmanager
async def _world(
    tmp_path: Path, *, a_policy: str = "reject", b_online: bool = False
) -> AsyncIterator[World]:
    emp_a = SandboxEmp(api_key="out-alpha-key", verify_codes={})
    emp_b = SandboxEmp(api_key="out-beta-key", verify_codes={})
    await emp_a.start()
    await emp_b.start()
    a = Partner("alpha", "in-alpha-key-000001", "alpha-partner-identifier", emp_a)
    b = Partner("beta", "in-beta-key-0000001", "beta-partner-identifier0", emp_b)
    emps = _emp_table(a.name, emp_a.url, a.inbound, a.partner_id, True, a_policy) + _emp_table(
        b.name, emp_b.url, b.inbound, b.partner_id, b_online, "reject"
    )
    offset = [0.0]
    cfg = load_config(
        write_config(tmp_path, emps=emps, sessions="pending_start_timeout_s = 30.0"), {}
    )
    gateway = Gateway(cfg, clock=lambda: time.time() + offset[0])
    await gateway.start()
    try:
        yield World(gateway, a, b, offset)
    finally:
        await gateway.stop()
        await emp_a.stop()
        await emp_b.stop()
    assert gateway.tasks.failures == 0


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with _world(tmp_path) as w:
        yield w


async def _available(cp: SimCharger) -> None:
    await cp.connect()
    for connector in (1, 2):
        await cp.status(connector, "Available")


async def _count(world: World, sql: str, *args: object) -> int:
    return int(await world.gateway.db.scalar(sql, args))


async def test_remote_start_unknown_evse_is_181(world: World) -> None:
    async with world.client(world.a) as client:
        status, body = await client.session_start("DE*CPO*E9999", EVCO_A)
    assert (status, body["result"]["code"]) == (200, 181)


async def test_remote_start_offline_charger_is_310(world: World) -> None:
    async with world.client(world.a) as client:
        status, body = await client.session_start(EVSE, EVCO_A)
    assert (status, body["result"]["code"]) == (200, 310)


async def test_remote_start_rejected_is_310_and_timeout_is_312(world: World) -> None:
    async with (
        world.charger("CP-BER-001", remote_start="reject") as cp,
        world.client(world.a) as client,
    ):
        await _available(cp)
        status, body = await client.session_start(EVSE, EVCO_A)
        assert (status, body["result"]["code"]) == (200, 310)
        cp.remote_start = "ignore"
        started = time.monotonic()
        status, body = await client.session_start(EVSE, EVCO_A)
        assert (status, body["result"]["code"]) == (200, 312)
        # The EMP never waits longer than the configured deadline (4 s in the test config).
        assert time.monotonic() - started < 4.0 + 1.0
    assert await _count(world, "SELECT COUNT(*) FROM sessions WHERE state = 'failed'") == 2


async def test_remote_start_occupied_is_320(world: World) -> None:
    async with world.charger("CP-BER-001") as cp, world.client(world.a) as client:
        await _available(cp)
        await cp.status(1, "Charging")
        await asyncio.sleep(0.05)
        status, body = await client.session_start(EVSE, EVCO_A)
        assert (status, body["result"]["code"]) == (200, 320)
        await cp.status(1, "Available")
        status, body = await client.session_start(EVSE, EVCO_A)
        assert body["result"]["code"] == 0
        # A running session also makes the EVSE busy, whatever the last status said.
        await cp.status(1, "Available")
        status, body = await client.session_start(EVSE, EVCO_B)
        assert body["result"]["code"] == 320


async def test_pending_start_that_never_begins_expires(world: World) -> None:
    async with (
        world.charger("CP-BER-001", remote_start="no-plug") as cp,
        world.client(world.a) as client,
    ):
        await _available(cp)
        status, body = await client.session_start(EVSE, EVCO_A)
        assert body["result"]["code"] == 0
        session_id = body["session-start"]["session-id"]
        status, body = await client.session_start(EVSE, EVCO_B)
        assert body["result"]["code"] == 320  # the pending start holds the EVSE
        core = world.gateway.core
        assert core is not None
        assert await core.remote.expire_pending() == 0
        world.offset[0] += 31.0
        assert await core.remote.expire_pending() == 1
        session = await world.gateway.store.session(session_id)
        assert session is not None and session.state == "failed"
        status, body = await client.session_start(EVSE, EVCO_B)
        assert body["result"]["code"] == 0  # the connector was released


async def test_stop_by_other_partner_is_refused_and_finished_stop_is_success(world: World) -> None:
    async with (
        world.charger("CP-BER-001") as cp,
        world.client(world.a) as alpha,
        world.client(world.b) as beta,
    ):
        await _available(cp)
        _, body = await alpha.session_start(EVSE, EVCO_A)
        session_id = body["session-start"]["session-id"]
        await world.a.emp.wait_for(lambda: cp.transaction_id(1) is not None)
        status, body = await beta.session_stop(EVSE, EVCO_B, session_id)
        assert (status, body["result"]["code"]) == (403, 220)
        status, body = await beta.session_stop(EVSE, EVCO_B)  # by EVSE: still not theirs
        assert (status, body["result"]["code"]) == (403, 220)
        status, body = await alpha.session_stop(EVSE, EVCO_A, session_id)
        assert (status, body["result"]["code"]) == (200, 0)
        await world.a.emp.wait_for(lambda: session_id in world.a.emp.cdrs)
        stops_before = sum(1 for action, _ in cp.received if action == "RemoteStopTransaction")
        status, body = await alpha.session_stop(EVSE, EVCO_A, session_id)
        assert (status, body["result"]["code"]) == (200, 0)
        stops_after = sum(1 for action, _ in cp.received if action == "RemoteStopTransaction")
        assert stops_after == stops_before  # no second stop sent to the charger
        status, body = await alpha.session_stop(EVSE, EVCO_A, "no-such-session")
        assert body["result"]["code"] == 182
    # Each EMP sees only its own CDRs.
    assert session_id in world.a.emp.cdrs and not world.b.emp.cdrs


async def test_card_whitelisted_unknown_removed(world: World) -> None:
    world.a.emp.verify_codes["DEADBEEF"] = 191
    async with world.charger("CP-BER-001") as cp, world.client(world.a) as alpha:
        await _available(cp)
        _, body = await alpha.rfid_post(world.a.partner_id, [CARD.lower()])
        assert body["rfid"]["processed"] == 1
        assert await cp.authorize(CARD) == "Accepted"
        assert await cp.authorize("deadbeef") == "Invalid"
        _, body = await alpha.rfid_post(world.a.partner_id, ["11223344"])
        assert body["rfid"]["processed"] == 1
        # Removed from the whitelist: the EMP's online answer (unknown) now decides.
        world.a.emp.verify_codes[CARD] = 191
        assert await cp.authorize(CARD) == "Invalid"
    core = world.gateway.core
    assert core is not None
    # Each decision is counted by the path that made it.
    assert core.authorizer.decisions[AuthPath.WHITELIST, AuthStatus.ACCEPTED] == 1
    assert core.authorizer.decisions[AuthPath.ONLINE, AuthStatus.INVALID] == 2


async def test_card_session_belongs_to_the_authorizing_emp(world: World) -> None:
    async with world.charger("CP-BER-001") as cp, world.client(world.b) as beta:
        await _available(cp)
        await beta.rfid_post(world.b.partner_id, [CARD])
        tx = await cp.start_transaction(
            2, CARD, meter_start=100, timestamp=datetime.now(UTC) - timedelta(hours=1)
        )
        await cp.meter_values(2, tx, 2100)
        await cp.stop_transaction(tx, 3100)
        await world.b.emp.wait_for(lambda: len(world.b.emp.cdrs) == 1)
    (cdr,) = world.b.emp.cdrs.values()
    assert cdr["user"] == {"identifier-type": "rfid", "identifier": CARD}
    assert cdr["partner-identifier"] == world.b.partner_id
    assert cdr["connector-id"] == "DE*CPO*E1001*2"
    assert cdr["energy-consumed"] == 3.0
    assert not world.a.emp.cdrs
    row = await world.gateway.db.one("SELECT auth_path, emp, origin FROM sessions")
    assert row is not None and tuple(row) == ("whitelist", "beta", "card")


async def test_unreachable_emp_reject_policy(world: World) -> None:
    await world.a.emp.refuse()
    async with world.charger("CP-BER-001") as cp:
        await _available(cp)
        assert await cp.authorize("CAFEBABE") == "Invalid"
        tx = await cp.start_transaction(1, "CAFEBABE", meter_start=0)
        await cp.stop_transaction(tx, 500)
    # Nobody authorized it: the CDR stays local, visible to ops.
    row = await world.gateway.db.one("SELECT emp, auth_path, state FROM sessions")
    assert row is not None and tuple(row) == (None, "policy", "finished")
    assert await _count(world, "SELECT COUNT(*) FROM outbox WHERE kind = 'cdr'") == 0


async def test_unreachable_emp_accept_policy(tmp_path: Path) -> None:
    async with _world(tmp_path, a_policy="accept") as world:
        await world.a.emp.refuse()
        async with world.charger("CP-BER-001") as cp:
            await _available(cp)
            assert await cp.authorize("CAFEBABE") == "Accepted"
            tx = await cp.start_transaction(1, "CAFEBABE", meter_start=0)
            await cp.stop_transaction(tx, 500)
        row = await world.gateway.db.one("SELECT emp, auth_path FROM sessions")
        assert row is not None and tuple(row) == ("alpha", "policy")
        emp = world.a.emp
        await emp.accept()
        await emp.wait_for(lambda: len(emp.cdrs) == 1, timeout=15)


async def test_whitelist_reaches_chargers_and_not_supported_is_remembered(world: World) -> None:
    async with (
        world.charger("CP-BER-001", local_list_max_length=2) as cp,
        world.charger("CP-HH-001", local_list_supported=False) as old,
        world.client(world.a) as alpha,
        world.client(world.b) as beta,
    ):
        await _available(cp)
        await _available(old)
        await alpha.rfid_post(world.a.partner_id, ["AABBCCDD", "11223344"])
        await beta.rfid_post(world.b.partner_id, ["11223344", "0102030405060708090A"])
        union = {"AABBCCDD", "11223344", "0102030405060708090A"}
        await world.a.emp.wait_for(lambda: set(cp.local_list) == union)
        # Chunked by SendLocalListMaxLength = 2: one Full, then a Differential that raises
        # the version (chargers refuse one that does not).
        lists = [p for a, p in cp.received if a == "SendLocalList"]
        assert [p["updateType"] for p in lists[-2:]] == ["Full", "Differential"]
        assert lists[-1]["listVersion"] == lists[-2]["listVersion"] + 1
        store = world.gateway.store
        for _ in range(100):  # the two chargers' pushes run concurrently
            if not (await store.local_list_state("CP-HH-001"))[2]:
                break
            await asyncio.sleep(0.05)
        assert (await store.local_list_state("CP-HH-001"))[2] is False
        old_lists = sum(1 for a, _ in old.received if a == "SendLocalList")
        await alpha.rfid_post(world.a.partner_id, ["99887766"])
        new_union = {"99887766", "11223344", "0102030405060708090A"}
        await world.a.emp.wait_for(lambda: set(cp.local_list) == new_union)
        assert sum(1 for a, _ in old.received if a == "SendLocalList") == old_lists


async def test_start_transaction_before_remote_start_answer(world: World) -> None:
    """A charger that sends StartTransaction before answering RemoteStartTransaction."""
    async with websockets.connect(
        world.ocpp_url + "/CP-BER-001", subprotocols=[Subprotocol("ocpp1.6")]
    ) as ws:

        async def call(uid: str, action: str, payload: dict[str, object]) -> object:
            await ws.send(orjson.dumps([2, uid, action, payload]).decode())
            while True:
                frame = orjson.loads(await ws.recv())
                if frame[0] == 3 and frame[1] == uid:
                    return frame[2]

        await call(
            "s1",
            "StatusNotification",
            {"connectorId": 1, "status": "Available", "errorCode": "NoError"},
        )
        async with world.client(world.a) as alpha:
            start = asyncio.create_task(alpha.session_start(EVSE, EVCO_A))
            while True:
                frame = orjson.loads(await ws.recv())
                if frame[0] == 2 and frame[2] == "RemoteStartTransaction":
                    break
            id_tag = frame[3]["idTag"]
            conf = await call(
                "t1", "StartTransaction",
                {"connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": "2026-01-01T10:00:00Z"},
            )  # fmt: skip
            assert isinstance(conf, dict) and conf["idTagInfo"]["status"] == "Accepted"
            await ws.send(orjson.dumps([3, frame[1], {"status": "Accepted"}]).decode())
            status, body = await start
        assert body["result"]["code"] == 0
        session = await world.gateway.store.session(body["session-start"]["session-id"])
        assert session is not None and session.transaction_id == conf["transactionId"]
        assert session.state == "active"


async def test_hash_id_tag_strategy_is_stable_hex(tmp_path: Path) -> None:
    from cpo_gateway.bridge.remote import hashed_id_tag

    tag = hashed_id_tag("DE8PSC123456", 0)
    assert len(tag) == 20 and tag == tag.upper() and int(tag, 16) >= 0
    assert tag == hashed_id_tag("DE8PSC123456", 0) != hashed_id_tag("DE8PSC123456", 1)
