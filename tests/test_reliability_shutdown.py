"""Graceful stop under load: SIGTERM to the daemon while chargers run sessions, an OIOI request
waits for a charger and the outbox is busy with a slow EMP. The request in flight gets its
answer, nothing committed is lost, the process exits 0 within the grace period, chargers see
close code 1012 and reconnect after the restart."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from cpo_gateway.bench.soak.crash import (
    CARDS,
    CrashReport,
    cdr_key,
    check,
    drain,
    drive,
    plan,
    try_connect,
)
from cpo_gateway.bench.soak.gateway import (
    INBOUND_KEY,
    OUTBOUND_KEY,
    PARTNER,
    GatewayProcess,
    charger_id,
    evse_id,
    free_port,
    write_config,
)
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp

GRACE_S = 5.0
CHARGERS = 4  # running sessions; charger 5 ignores remote starts, charger 6 is a raw socket
SESSIONS = 24


async def test_sigterm_under_load_finishes_in_flight_work_and_loses_nothing(
    tmp_path: Path,
) -> None:
    ocpp_port, oioi_port = free_port(), free_port()
    oioi_url = f"http://127.0.0.1:{oioi_port}/api/v4/request"
    url = f"ws://127.0.0.1:{ocpp_port}/ocpp"
    planned = plan(SESSIONS, CHARGERS)
    async with SandboxEmp(api_key=OUTBOUND_KEY) as emp:
        emp.set_delay(0.3)  # a slow EMP: the outbox always has rows in flight
        config = write_config(tmp_path, emp_url=emp.url, chargers=6, ocpp_port=ocpp_port,
                              oioi_port=oioi_port, grace_s=GRACE_S)  # fmt: skip
        gateway = GatewayProcess(config, ocpp_port, oioi_port, tmp_path / "gateway.log")
        await gateway.start()
        async with EmpClient(oioi_url, INBOUND_KEY, timeout=30) as client:
            assert (await client.rfid_post(PARTNER, CARDS))[0] == 200
            cps = [SimCharger(charger_id(i), url, call_timeout=5) for i in range(1, 5)]
            silent = SimCharger(charger_id(5), url, call_timeout=5, remote_start="ignore")
            try:
                for cp in [*cps, silent]:
                    await cp.connect()
                async with connect(f"{url}/{charger_id(6)}", subprotocols=[Subprotocol(
                        "ocpp1.6")]) as raw:  # fmt: skip
                    rng = random.Random(5)
                    mine = [[p for p in planned if p.charger == i] for i in range(1, 5)]
                    driving = asyncio.gather(*(
                        drive(cp, s, random.Random(rng.random()), 0.4)
                        for cp, s in zip(cps, mine, strict=True)))  # fmt: skip
                    # An OIOI request that waits on a charger which never answers.
                    request = asyncio.create_task(
                        client.session_start(evse_id(5, 1), "DE-8PS-C12345-6")
                    )
                    await emp.wait_for(
                        lambda: any(a == "RemoteStartTransaction" for a, _ in silent.received),
                        timeout=10,
                    )
                    await emp.wait_for(lambda: len(emp.cdrs) >= 3, timeout=20)
                    sent_at = time.monotonic()
                    code = await gateway.terminate(timeout_s=GRACE_S + 10)
                    took = time.monotonic() - sent_at
                    await raw.wait_closed()
                    assert raw.close_code == 1012
                status, body = await request
                assert status == 200 and body["result"]["code"] != 0, body
                assert code == 0, f"exit code {code}; see {tmp_path / 'gateway.log'}"
                assert took <= GRACE_S + 5  # the grace period, plus interpreter exit
                await gateway.start()
                await driving
                await asyncio.gather(*(drain(cp) for cp in cps))
                keys = {p.key for p in planned}
                await emp.wait_for(
                    lambda: keys <= {cdr_key(c) for c in emp.cdrs.values()}, timeout=30
                )
                for cp in cps:
                    for _ in range(50):
                        if await try_connect(cp):
                            break
                        await asyncio.sleep(0.1)
                assert all(cp.connected for cp in cps), "chargers reconnect after the restart"
            finally:
                for cp in [*cps, silent]:
                    await cp.close()
                if gateway.running:
                    await gateway.terminate()
    report = CrashReport(sessions=SESSIONS, chargers=CHARGERS)
    check(report, planned, emp)
    assert report.missing == [] and report.split == [] and report.wrong_energy == []
    assert sum(len(cp.dropped) for cp in cps) == 0
