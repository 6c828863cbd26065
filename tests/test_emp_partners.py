"""Partners and their protocols: what each is owed, who delivers it, and session updates.

A second partner is served by a recording adapter (a test EmpLink: not our component) on a
real gateway beside the sandbox OIOI EMP, so the core's choice of what to queue for whom is
seen end to end: through the charger, the database and the delivery loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from cpo_gateway.app import Gateway, StartupError
from cpo_gateway.bridge.model import Delivery, DeliveryStatus, Place, VerifyOutcome
from cpo_gateway.bridge.owed import Owed, SessionPhase, SessionUpdate
from cpo_gateway.config import Config, ConfigError, load_config
from cpo_gateway.oioi.client import EmpClients, Endpoint, NotCarried, render
from cpo_gateway.partners import EmpRouter, partner_terms, unserved
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import INBOUND_KEY, OUTBOUND_KEY, PARTNER, running_gateway, write_config
from tests.test_oioi_whitelist import cli

CARD = "0A0B0C0D"


def hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


ROAM_PARTNER = "roaming-partner-identifier-01"


def _emps(sandbox_url: str, roam_protocol: str = "oioi") -> str:
    return f"""
        [[emp]]
        name = "sandbox"
        url = "{sandbox_url}"
        api_key = "{OUTBOUND_KEY}"
        inbound_api_key = "{INBOUND_KEY}"
        partner_identifier = "{PARTNER}"

        [[emp]]
        name = "roam"
        protocol = "{roam_protocol}"
        url = "http://127.0.0.1:9/unused"
        api_key = "roam-outbound-key-0001"
        inbound_api_key = "roam-inbound-key-0001"
        partner_identifier = "{ROAM_PARTNER}"
    """


def with_ocpi_roam(path: Path) -> Config:
    """The config at `path` with its EMP "roam" speaking OCPI (set here rather than in the
    file: what else an OCPI partner's table holds is not this test's business)."""
    cfg = load_config(path, {})
    emps = tuple(
        dataclasses.replace(e, protocol="ocpi") if e.name == "roam" else e for e in cfg.emps
    )
    return dataclasses.replace(cfg, emps=emps)


@dataclass
class Recorder:
    """A partner adapter that takes everything and remembers it."""

    delivered: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> VerifyOutcome:
        return VerifyOutcome.UNKNOWN

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        self.delivered.append((emp, kind, dict(payload)))
        return Delivery(DeliveryStatus.DELIVERED)

    def of(self, kind: Owed) -> list[dict[str, Any]]:
        return [p for _, k, p in self.delivered if k == kind]


# --- configuration ----------------------------------------------------------------------------
def test_protocol_defaults_to_oioi_and_names_the_key_when_wrong(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path), {})
    assert [e.protocol for e in cfg.emps] == ["oioi"]
    bad = write_config(tmp_path, emps=_emps("http://127.0.0.1:9/x", roam_protocol="ftp"))
    with pytest.raises(ConfigError) as info:
        load_config(bad, {})
    (problem,) = info.value.problems
    assert "emp[1].protocol" in problem and "'oioi'" in problem and "'ocpi'" in problem


def test_each_protocol_gives_its_terms(tmp_path: Path) -> None:
    cfg = with_ocpi_roam(write_config(tmp_path, emps=_emps("http://127.0.0.1:9/x")))
    oioi, roam = (partner_terms(e) for e in cfg.emps)
    assert oioi.wants == {Owed.STATION, Owed.EVSE_STATUS, Owed.CDR}
    assert oioi.fixed_connectors
    assert roam.wants == set(Owed) and not roam.fixed_connectors


async def test_a_partner_of_a_protocol_no_adapter_serves_refuses_to_start(tmp_path: Path) -> None:
    cfg = with_ocpi_roam(write_config(tmp_path, emps=_emps("http://127.0.0.1:9/x")))
    gateway = Gateway(cfg)
    with pytest.raises(StartupError) as info:
        await gateway.start()
    await gateway.stop()
    assert info.value.exit_code == 78 and "roam (ocpi)" in str(info.value)


async def test_check_config_names_a_partner_no_adapter_serves(tmp_path: Path) -> None:
    ok = await cli(write_config(tmp_path), "check-config")
    assert ok[0] == 0 and "(sandbox: oioi)" in ok[1]
    # This build serves OCPI; a protocol without an adapter would be named.
    cfg = with_ocpi_roam(write_config(tmp_path, emps=_emps("http://127.0.0.1:9/x")))
    assert unserved(cfg.emps) == []
    assert unserved(cfg.emps, {"oioi"}) == ["roam (ocpi)"]


# --- OIOI carries what it has calls for, and refuses the rest -----------------------------------
async def test_the_oioi_client_refuses_a_kind_it_does_not_carry(emp: SandboxEmp) -> None:
    clients = EmpClients([Endpoint("sandbox", emp.url, OUTBOUND_KEY)])
    await clients.start()
    try:
        update = SessionUpdate(
            "s-1", "DE*CPO*E1001*1", PARTNER, "rfid", CARD, SessionPhase.STARTED, "x", "y"
        )
        for kind in (Owed.SESSION, Owed.COMMAND_RESULT, "session-post"):
            result = await clients.deliver("sandbox", kind, update.to_dict())
            assert result.status is DeliveryStatus.REJECTED, kind
            assert f"outbox kind {str(kind)!r} has no OIOI call" in result.detail
    finally:
        await clients.close()
    assert emp.requests == []  # nothing reached the EMP
    with pytest.raises(NotCarried):
        render(Owed.SESSION, update.to_dict())


async def test_the_router_hands_each_emp_to_its_adapter_and_rejects_an_unrouted_one() -> None:
    first, second = Recorder(), Recorder()
    router = EmpRouter({"a": first, "b": second})
    assert (await router.deliver("a", Owed.CDR, {"n": 1})).status is DeliveryStatus.DELIVERED
    assert (await router.deliver("b", Owed.STATION, {"n": 2})).status is DeliveryStatus.DELIVERED
    assert first.delivered == [("a", "cdr", {"n": 1})]
    assert second.delivered == [("b", "station", {"n": 2})]
    lost = await router.deliver("c", Owed.CDR, {})
    assert lost.status is DeliveryStatus.REJECTED and "'c'" in lost.detail
    assert await router.verify("c", CARD) is VerifyOutcome.UNREACHABLE
    assert await router.verify("a", CARD) is VerifyOutcome.UNKNOWN


# --- session updates, end to end -------------------------------------------------------------
def _json(row: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(row["payload"])
    return data


async def _updates(gateway: Gateway, emp: str) -> list[dict[str, Any]]:
    rows = await gateway.store.db.all(
        "SELECT id, state, payload FROM outbox WHERE emp = ? AND kind = ? ORDER BY id",
        (emp, Owed.SESSION),
    )
    return [dict(r) for r in rows]


async def _settled(recorder: Recorder, predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the recording partner never got what was expected")


async def test_a_following_partner_gets_start_rate_limited_progress_and_end_in_commits(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    offset = [0.0]
    cfg = with_ocpi_roam(
        write_config(tmp_path, emps=_emps(emp.url), sessions="update_interval_s = 60.0")
    )
    recorder = Recorder()
    gateway = Gateway(cfg, clock=lambda: time.time() + offset[0], adapters={"ocpi": recorder})
    async with running_gateway(gateway, emp) as h:
        await gateway.core.set_whitelist("roam", [CARD])
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            tx = await cp.start_transaction(1, CARD, meter_start=1000, timestamp=hour_ago())
            # Written with the start: one update, before the charger had its answer.
            (started,) = await _updates(gateway, "roam")
            first = SessionUpdate.from_dict(_json(started))
            assert (first.phase, first.energy_kwh, first.stop) == (SessionPhase.STARTED, 0.0, None)
            assert first.partner_identifier == ROAM_PARTNER and first.user_id == CARD

            await cp.meter_values(1, tx, 2000)  # within the interval: no progress row
            rows = await _updates(gateway, "roam")
            assert [SessionUpdate.from_dict(_json(r)).phase for r in rows] == ["started"]

            offset[0] += 61.0
            await cp.meter_values(1, tx, 5000)  # the interval has passed: energy so far
            await cp.meter_values(1, tx, 6000)  # and a new one starts: folded in, not queued
            rows = await _updates(gateway, "roam")
            newest = SessionUpdate.from_dict(_json(rows[-1]))
            assert (newest.phase, newest.energy_kwh) == (SessionPhase.CHARGING, 4.0)
            assert sum(r["state"] == "pending" for r in rows) <= 1  # coalesced

            await cp.stop_transaction(tx, 7000)
            rows = await _updates(gateway, "roam")
            last = SessionUpdate.from_dict(_json(rows[-1]))
            assert (last.phase, last.energy_kwh) == (SessionPhase.ENDED, 6.0)
            assert last.stop is not None
            assert sum(r["state"] == "pending" for r in rows) <= 1

        await _settled(
            recorder, lambda: any(u["phase"] == "ended" for u in recorder.of(Owed.SESSION))
        )
        await _settled(recorder, lambda: len(recorder.of(Owed.CDR)) == 1)
        oioi_updates = await _updates(gateway, "sandbox")

    # The partner saw the session in order and billed once, with the energy of the stop.
    # (A pending update is rewritten by a newer one: a quick session may reach it only as
    # its end, never out of order.)
    phases = [u["phase"] for u in recorder.of(Owed.SESSION)]
    assert phases[-1] == "ended" and phases.count("ended") == 1
    assert phases == sorted(phases, key=["started", "charging", "ended"].index)
    (cdr,) = recorder.of(Owed.CDR)
    assert cdr["energy_kwh"] == 6.0 and cdr["partner_identifier"] == ROAM_PARTNER
    assert cdr["session_id"] == recorder.of(Owed.SESSION)[-1]["session_id"]
    # It wants stations and statuses too; the OIOI EMP never gets session updates or its CDR.
    assert len(recorder.of(Owed.STATION)) == len(cfg.catalogue.stations)
    assert recorder.of(Owed.EVSE_STATUS)
    assert oioi_updates == []
    assert cdr["session_id"] not in emp.cdrs
    assert {k for e, k, _ in recorder.delivered if e != "roam"} == set()


async def test_a_held_cdr_withholds_the_session_end_until_it_is_released(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    cfg = with_ocpi_roam(write_config(tmp_path, emps=_emps(emp.url)))
    recorder = Recorder()
    async with running_gateway(Gateway(cfg, adapters={"ocpi": recorder}), emp) as h:
        await h.gateway.core.set_whitelist("roam", [CARD])
        async with h.charger("CP-BER-001") as cp:
            await cp.connect()
            tx = await cp.start_transaction(1, CARD, meter_start=1000)
            await cp.stop_transaction(tx, 90_000)  # 89 kWh in no time: held for review
        rows = await _updates(h.gateway, "roam")
        assert [_json(r)["phase"] for r in rows] == ["started"]
        session_id = _json(rows[0])["session_id"]
        released = await h.gateway.core.release_held_cdr(session_id, kwh=0.5)
        assert released.ok, released.detail
        rows = await _updates(h.gateway, "roam")
        await _settled(recorder, lambda: len(recorder.of(Owed.CDR)) == 1)
    end = SessionUpdate.from_dict(_json(rows[-1]))
    assert (end.phase, end.energy_kwh, end.session_id) == (SessionPhase.ENDED, 0.5, session_id)
    (cdr,) = recorder.of(Owed.CDR)
    assert cdr["energy_kwh"] == 0.5
