"""What an OCPI partner is told of a broken EVSE: the pushed status PATCH names the fault
(OUTOFORDER) or the switch-off (INOPERATIVE) the charger reported, as the GET list does,
while the OIOI EMP hears the same Offline it always did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.ocpi.locations import evse_uid
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from tests.conftest import Harness
from tests.ocpi_gateway_support import registered_with_emsp, until

EVSE = "DE*CPO*E1001*1"  # CP-BER-001 connector 1


@pytest.fixture
async def gw(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[tuple[Harness, SandboxEmsp]]:
    async with registered_with_emsp(tmp_path, emp) as pair:
        yield pair


def patches(emsp: SandboxEmsp) -> list[Any]:
    uid = evse_uid(EVSE)
    return [
        r.body["status"]
        for r in emsp.received
        if r.module == "locations" and r.method == "PATCH" and r.path.endswith("/" + uid)
    ]


async def listed_status(emsp: SandboxEmsp) -> str:
    reg = emsp.registration
    assert reg is not None
    listed = await emsp.send("GET", reg.endpoints["locations"], reg.token_theirs)
    for location in listed["data"]:
        for evse in location["evses"]:
            if evse["evse_id"] == EVSE:
                return str(evse["status"])
    raise AssertionError(f"{EVSE} is in no listed location")


async def test_a_faulted_then_switched_off_evse_is_pushed_as_the_list_shows_it(
    gw: tuple[Harness, SandboxEmsp], emp: SandboxEmp
) -> None:
    h, emsp = gw
    async with h.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.status(1, "Available")
        await until(lambda: "AVAILABLE" in patches(emsp), "the AVAILABLE PATCH")
        await cp.status(1, "Faulted", "GroundFailure")
        await until(lambda: "OUTOFORDER" in patches(emsp), "the OUTOFORDER PATCH")
        assert await listed_status(emsp) == "OUTOFORDER"
        # Still Offline to the core, but no longer a fault: the partner is told that too.
        await cp.status(1, "Unavailable")
        await until(lambda: "INOPERATIVE" in patches(emsp), "the INOPERATIVE PATCH")
        assert await listed_status(emsp) == "INOPERATIVE"
        seen = patches(emsp)
        assert "UNKNOWN" not in seen[seen.index("AVAILABLE") :]
        assert seen[-2:] == ["OUTOFORDER", "INOPERATIVE"]
    # The OIOI EMP heard Offline once: the switch-off behind the fault changes nothing
    # in its words, so it is sent nothing more.
    offline = [
        c for c in emp.calls("connector-post-status") if "Offline" in str(c) and EVSE in str(c)
    ]
    assert len(offline) == 1, offline
