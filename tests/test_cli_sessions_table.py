"""`cpo-gateway sessions list`: a header line, start and stop times, duration and energy;
aligned columns for people, `--tsv` for scripts, the same columns in both."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.conftest import Harness
from tests.test_oioi_whitelist import cli

CARD = "AABBCCDD"


async def test_sessions_list_shows_times_duration_and_energy(harness: Harness) -> None:
    config = harness.gateway.config.path
    assert harness.gateway.core is not None
    await harness.gateway.core.set_whitelist("sandbox", [CARD])
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    async with harness.charger("CP-HH-001") as cp:
        await cp.connect()
        done = await cp.start_transaction(1, CARD, meter_start=1000, timestamp=began)
        await cp.stop_transaction(done, 13_345, timestamp=began + timedelta(minutes=90, seconds=5))
        running = await cp.start_transaction(2, CARD, meter_start=500, timestamp=began)
        await cp.meter_values(2, running, 2_750)
        async with asyncio.timeout(10):
            while len(await harness.store.session_rows(10, "finished")) < 1:
                await asyncio.sleep(0.05)
        code, out, err = await cli(config, "sessions", "list", "--tsv")
        code_aligned, aligned, _ = await cli(config, "sessions", "list", "--state", "active")
    assert code == 0 and code_aligned == 0, err
    header, *lines = [line.split("\t") for line in out.splitlines()]
    assert header == [
        "session", "state", "origin", "evse_id", "emp", "tx", "auth", "start", "stop",
        "duration", "kwh",
    ]  # fmt: skip
    rows = {row[3]: dict(zip(header, row, strict=True)) for row in lines}
    finished = rows["DE*CPO*E3001*1"]
    assert (finished["state"], finished["origin"], finished["emp"]) == (
        "finished",
        "card",
        "sandbox",
    )
    assert datetime.fromisoformat(finished["start"]) == began
    assert datetime.fromisoformat(finished["stop"]) == began + timedelta(minutes=90, seconds=5)
    assert (finished["duration"], finished["kwh"]) == ("1:30:05", "12.345")
    active = rows["DE*CPO*E3001*2"]
    assert (active["state"], active["stop"], active["duration"]) == ("active", "-", "-")
    assert active["kwh"] == "2.250"  # so far: the last reading minus the start
    top, *body = aligned.splitlines()
    assert top.split() == header and len(body) == 1
    assert body[0].split()[1] == "active" and body[0].split()[-1] == "2.250"
