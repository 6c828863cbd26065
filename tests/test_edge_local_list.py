"""One local-list push per change per charger: failures back off and stop, a charger with its
local list switched off gets none, and the reason is visible per charger (CLI, /metrics)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from cpo_gateway.app import Gateway
from cpo_gateway.bridge import locallist
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER, running_gateway, write_config
from tests.test_csms_support import CP, RawCharger, accept_all

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X1"}


def _config(enabled: str, send_status: str) -> Any:
    def respond(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if action == "GetConfiguration":
            return {
                "configurationKey": [
                    {"key": "LocalAuthListEnabled", "readonly": False, "value": enabled},
                    {"key": "SendLocalListMaxLength", "readonly": True, "value": "50"},
                ],
                "unknownKey": ["LocalAuthListMaxLength"],
            }
        if action == "SendLocalList":
            return {"status": send_status}
        return accept_all(action, payload)

    return respond


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def _record(gateway: Gateway, check: Any) -> Any:
    for _ in range(200):
        record = await gateway.store.local_list_record(CP)
        if check(record):
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(await gateway.store.local_list_record(CP))


def _sends(raw: RawCharger) -> int:
    return sum(a == "SendLocalList" for a, _ in raw.calls)


async def test_a_failing_charger_is_retried_with_back_off_and_then_left_alone(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    path = write_config(tmp_path, emp_url=emp.url)
    clock = Clock()
    gateway = Gateway(load_config(path, {}), clock=clock)
    async with running_gateway(gateway, emp) as h:
        assert gateway.core is not None
        pusher = gateway.core.local_list
        await gateway.core.set_whitelist("sandbox", ["AABBCCDD"])
        async with RawCharger.open(
            h.ocpp_url, responder=_config("true", "Failed"), greet=False
        ) as raw:
            await raw.call("BootNotification", BOOT)
            await raw.wait_calls("SendLocalList")
            await _record(gateway, lambda r: r.failures == 1)
            for _ in range(3):  # the minute job, before the back-off has passed
                await pusher.push_all()
            assert _sends(raw) == 1
            for _ in range(3 * locallist.MAX_FAILURES):
                clock.offset += locallist.RETRY_CAP_S
                await pusher.push_all()
            assert _sends(raw) == locallist.MAX_FAILURES
            record = await gateway.store.local_list_record(CP)
            assert (record.failures, record.next_at, record.result) == (
                locallist.MAX_FAILURES,
                None,
                "rejected",
            )
            async with aiohttp.ClientSession() as http, http.get(h.base_url + "/metrics") as resp:
                metrics = await resp.text()
            assert 'cpo_gateway_local_list_chargers{state="gave_up"} 1.0' in metrics
            pushes = f'cpo_gateway_local_list_pushes_total{{result="rejected"}} {locallist.MAX_FAILURES}.0'
            assert pushes in metrics
        # A reconnect with a boot forgives: one push, not one per path.
        async with RawCharger.open(
            h.ocpp_url, responder=_config("true", "Failed"), greet=False
        ) as raw:
            await raw.call("BootNotification", BOOT)
            await raw.wait_calls("SendLocalList")
            await raw.call("Heartbeat", {})
            await _record(gateway, lambda r: r.failures == 1)
            assert _sends(raw) == 1
            # So does a change of the whitelist.
            await _push_failures_to_the_cap(pusher, clock)
            await gateway.core.set_whitelist("sandbox", ["AABBCCDD", "11223344"])
            await raw.wait_calls("SendLocalList", locallist.MAX_FAILURES + 1)
    out = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "charger", "local-list", "-c", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith(CP + "\t"))
    fields = line.split("\t")
    assert fields[3:6] == ["backing_off", "rejected", "1"], line
    assert fields[8].endswith("Failed"), line  # the charger's own answer


async def _push_failures_to_the_cap(pusher: locallist.LocalListPusher, clock: Clock) -> None:
    for _ in range(2 * locallist.MAX_FAILURES):
        clock.offset += locallist.RETRY_CAP_S
        await pusher.push_all()


async def test_a_charger_with_its_local_list_switched_off_gets_no_push(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    path = write_config(tmp_path, emp_url=emp.url)
    gateway = Gateway(load_config(path, {}))
    with structlog.testing.capture_logs() as events:
        async with running_gateway(gateway, emp) as h:
            assert gateway.core is not None
            await gateway.core.set_whitelist("sandbox", ["AABBCCDD"])
            async with RawCharger.open(
                h.ocpp_url, responder=_config("false", "Failed"), greet=False
            ) as raw:
                await raw.call("BootNotification", BOOT)
                await raw.wait_calls("GetConfiguration")
                await _record(gateway, lambda r: r.result == "disabled")
                for _ in range(3):
                    await gateway.core.local_list.push_all()
                async with h.client() as client:
                    assert (await client.rfid_post(PARTNER, ["AABBCCDD", "11223344"]))[0] == 200
                await gateway.core.local_list.push_all()
                await raw.call("Heartbeat", {})
                assert _sends(raw) == 0
                assert sum(a == "GetConfiguration" for a, _ in raw.calls) == 1
    said = [e for e in events if e["event"] == "locallist.disabled_on_charger"]
    assert len(said) == 1


async def test_a_booting_sim_charger_gets_one_push_per_change_and_no_trigger(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    path = write_config(tmp_path, emp_url=emp.url)
    async with running_gateway(Gateway(load_config(path, {})), emp) as h:
        async with h.client() as client:
            assert (await client.rfid_post(PARTNER, ["AABBCCDD"]))[0] == 200
        async with h.charger(CP) as cp:
            await cp.connect()
            await emp.wait_for(lambda: set(cp.local_list) == {"AABBCCDD"})
            async with h.client() as client:
                assert (await client.rfid_post(PARTNER, ["AABBCCDD", "11223344"]))[0] == 200
            await emp.wait_for(lambda: set(cp.local_list) == {"AABBCCDD", "11223344"})
            assert h.gateway.core is not None
            await h.gateway.core.local_list.push_all()  # the minute job: nothing is due
            await cp.heartbeat()
            actions = [a for a, _ in cp.received]
    assert actions.count("SendLocalList") == 2, actions
    assert actions.count("GetConfiguration") == 1, actions
    assert "TriggerMessage" not in actions
