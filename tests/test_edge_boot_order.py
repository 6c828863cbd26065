"""Nothing goes to a charger before its first message, and our own housekeeping never makes a
partner's remote start wait past its deadline."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from cpo_gateway.csms.connection import CallSlot
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import PARTNER
from tests.test_csms_support import (
    TS,
    RawCharger,
    accept_all,
    config,
    eventually,
    running,
    with_ocpp,
)

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X1"}
HOUSEKEEPING = ("TriggerMessage", "GetConfiguration", "SendLocalList", "GetLocalListVersion")


async def _whitelist(h: Any, uids: list[str]) -> None:
    async with h.client() as client:
        assert (await client.rfid_post(PARTNER, uids))[0] == 200


async def test_a_booting_charger_gets_no_call_before_its_boot_is_answered(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with running(config(tmp_path, emp), emp) as h:
        await _whitelist(h, ["AABBCCDD"])
        async with RawCharger.open(h.ocpp_url, greet=False) as raw:
            await asyncio.sleep(0.5)  # the charger is still booting
            assert raw.calls == []
            reply = await raw.call("BootNotification", BOOT)
            assert reply[2]["status"] == "Accepted"
            # The boot answer came first; then the list, and no status trigger: the boot
            # brings the statuses.
            await raw.wait_calls("SendLocalList")
            await raw.call("Heartbeat", {})
            assert "TriggerMessage" not in [a for a, _ in raw.calls]
            assert [a for a, _ in raw.calls] == ["GetConfiguration", "SendLocalList"]


async def test_a_charger_back_without_boot_is_resynced_after_its_first_message(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with (
        running(config(tmp_path, emp), emp) as h,
        RawCharger.open(h.ocpp_url, greet=False) as raw,
    ):
        await asyncio.sleep(0.5)
        assert raw.calls == []
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": TS}
        reply = await raw.call("StatusNotification", status)
        assert reply[0] == 3
        await raw.wait_calls("TriggerMessage")
        assert raw.calls[0] == ("TriggerMessage", {"requestedMessage": "StatusNotification"})


async def test_a_silent_charger_is_resynced_after_a_grace(tmp_path: Path, emp: SandboxEmp) -> None:
    async with (
        running(config(tmp_path, emp), emp) as h,
        RawCharger.open(h.ocpp_url, greet=False) as raw,
    ):
        await raw.wait_calls("TriggerMessage", timeout=10)
        assert raw.calls[0][0] == "TriggerMessage"


def _only_remote_start(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """A charger that never answers housekeeping calls but takes remote starts."""
    if action in HOUSEKEEPING:
        return None
    return accept_all(action, payload)


async def test_a_remote_start_is_not_held_up_by_an_unanswered_housekeeping_call(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    # Production timeouts: a Call waits 30 s for its answer, the partner 4 s for ours.
    cfg = config(tmp_path, emp, change=with_ocpp(call_timeout_s=30.0))
    async with running(cfg, emp) as h:
        await _whitelist(h, ["AABBCCDD"])
        async with RawCharger.open(h.ocpp_url, responder=_only_remote_start, greet=False) as raw:
            assert (await raw.call("BootNotification", BOOT))[2]["status"] == "Accepted"
            await raw.wait_calls("GetConfiguration")  # out, and never answered
            async with h.client() as client:
                status, body = await client.session_start("DE*CPO*E1001*1", "DE-8PS-C12345-6")
            assert status == 200 and body["result"]["code"] == 0, body
            assert any(a == "RemoteStartTransaction" for a, _ in raw.calls)


def _all_but_the_local_list(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    if action == "SendLocalList":
        return None  # the charger is writing its list: no answer yet
    return accept_all(action, payload)


async def test_a_send_local_list_out_never_gives_way(tmp_path: Path, emp: SandboxEmp) -> None:
    """Abandoning a SendLocalList would put a second Call on a charger writing its list (OCPP-J
    allows one at a time): a partner's start waits for it, and gets 312 past its deadline."""
    cfg = config(tmp_path, emp, change=with_ocpp(call_timeout_s=30.0))
    async with running(cfg, emp) as h:
        await _whitelist(h, ["AABBCCDD"])
        async with RawCharger.open(
            h.ocpp_url, responder=_all_but_the_local_list, greet=False
        ) as raw:
            assert (await raw.call("BootNotification", BOOT))[2]["status"] == "Accepted"
            await raw.wait_calls("SendLocalList")  # out, and not answered
            async with h.client() as client:
                status, body = await client.session_start("DE*CPO*E1001*1", "DE-8PS-C12345-6")
            assert status == 200 and body["result"]["code"] == 312, body
            assert "RemoteStartTransaction" not in [a for a, _ in raw.calls]


async def test_a_remote_start_to_a_silent_charger_goes_after_the_grace(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    """Connected and silent: when the grace ends the start goes first, before the resync."""
    # Production timeouts: the grace is 5 s, the partner's deadline 7.5 s.
    cfg = config(tmp_path, emp, change=with_ocpp(call_timeout_s=30.0))
    cfg = dataclasses.replace(cfg, oioi=dataclasses.replace(cfg.oioi, request_deadline_s=8.0))
    async with (
        running(cfg, emp) as h,
        RawCharger.open(h.ocpp_url, responder=_only_remote_start, greet=False) as raw,
    ):
        async with h.client() as client:
            status, body = await client.session_start("DE*CPO*E1001*1", "DE-8PS-C12345-6")
        assert status == 200 and body["result"]["code"] == 0, body
        await eventually(lambda: len(raw.calls) >= 2)
        assert [a for a, _ in raw.calls][:2] == ["RemoteStartTransaction", "TriggerMessage"]


async def test_the_call_slot_serves_urgent_waiters_first_and_survives_cancellation() -> None:
    order: list[str] = []
    slot = CallSlot(lambda: None)

    async def take(name: str, urgent: bool) -> None:
        await slot.acquire(urgent)
        order.append(name)
        await asyncio.sleep(0)
        slot.release()

    waiting = [
        asyncio.create_task(take("routine-1", False)),
        asyncio.create_task(take("routine-2", False)),
        asyncio.create_task(take("urgent", True)),
    ]
    gone = asyncio.create_task(take("gave-up", True))
    await asyncio.sleep(0)  # all queue on the slot, closed until the charger has greeted
    gone.cancel()
    slot.open()
    await asyncio.gather(*waiting)
    assert gone.cancelled()
    assert order == ["urgent", "routine-1", "routine-2"]
    assert not slot.held
    # Handed over just as its waiter gives up: the slot passes on, it is not lost.
    order.clear()
    await slot.acquire(False)
    first = asyncio.create_task(take("first", True))
    second = asyncio.create_task(take("second", False))
    await asyncio.sleep(0)
    slot.release()
    first.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    assert order == ["second"] and not slot.held
