"""Benchmark `ocpi-start`: OCPI START_SESSION end to end, and the CDR push rate.

One process holds the gateway, the sandbox eMSP (registered with it the way a partner
registers) and simulated 1.6 chargers, all on loopback: the figures include the sandbox's
own work on the same cores.

- answer: the eMSP's POST {commands}/START_SESSION round trip until its CommandResponse.
  The gateway answers before it asks the charger (the claim of the EVSE and the result row
  it owes are committed first), so this is the whole overhead the eMSP waits for; the
  charger's own reply is not in it.
- result: from the POST until the CommandResult reaches response_url. The simulated
  charger answers RemoteStartTransaction at once, so this is the gateway, the websocket
  round trip and the outbox's wake-up (the bench sets [outbox] tick_s = 0.1: half of it
  on average is waiting for the next pass).
- CDR push: `cdrs` CDRs queued for the eMSP in one go, delivered by the running outbox; the
  rate is CDRs acknowledged per second between the first and the last.
"""

from __future__ import annotations

import asyncio
import logging
import time

from cpo_gateway.app import Gateway
from cpo_gateway.bench.ocpp_scenarios import Context
from cpo_gateway.bench.report import Table, ms, num, percentile
from cpo_gateway.bench.servers import (
    CHARGERS_PER_STATION,
    charger_ids,
    evse_id,
    write_gateway_config,
)
from cpo_gateway.bridge.cdr import cdr_to_dict
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.bridge.model import Cdr, Interval, User, UserKind
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.config import load_config
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp

CARD = "04A2B3C4"
_OCPI = """
[ocpi]
host = "127.0.0.1"
port = 0
country_code = "DE"
party_id = "BEN"
business_name = "Bench CPO"

[outbox]
tick_s = 0.1
batch_size = 1000
"""


def _token() -> dict[str, object]:
    return {
        "country_code": "NL",
        "party_id": "EMS",
        "uid": CARD,
        "type": "RFID",
        "contract_id": "NL-EMS-C12345678-9",
        "issuer": "Sandbox eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2026-01-01T00:00:00Z",
    }


async def _until(check: object, timeout_s: float, step_s: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(step_s)
    return False


async def ocpi_start(ctx: Context, starts: int = 200, cdrs: int = 5_000) -> Table:
    table = Table(
        f"OCPI START_SESSION end to end ({starts} starts) and CDR push ({cdrs:,} CDRs)",
        ("measure", "count", "p50 ms", "p99 ms", "max ms", "rate /s", "errors"),
    )
    directory = ctx.directory("ocpi-start")
    # A pass still running when the next tick comes is skipped, and said so: not news here.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    n_chargers = 10
    async with SandboxEmsp() as emsp:
        path = write_gateway_config(directory, n_chargers, "http://127.0.0.1:9/unused", 0, 0)
        extra = (
            f'\n[[emp]]\nname = "emsp"\nprotocol = "ocpi"\n'
            f'versions_url = "{emsp.versions_url}"\ntoken_a = "{emsp.token_a}"\nconcurrency = 32\n'
        )
        with path.open("a", encoding="utf-8") as f:
            f.write(extra + _OCPI)
        gateway = Gateway(load_config(path, {}))
        await gateway.start()
        try:
            answers, results, errors = await _starts(gateway, emsp, n_chargers, starts)
            rate, delivered = await _cdr_push(gateway, emsp, cdrs)
        finally:
            await gateway.stop()
    for name, values in (("START_SESSION answer", answers), ("CommandResult at URL", results)):
        table.add(
            name,
            len(values),
            ms(percentile(values, 50)),
            ms(percentile(values, 99)),
            ms(max(values, default=float("nan"))),
            "",
            errors,
        )
    table.add("CDR POST to the eMSP", delivered, "", "", "", num(rate), cdrs - delivered)
    table.notes.append(
        "answer = the eMSP's HTTP round trip (the charger is asked after it); result = POST "
        "to CommandResult received (outbox tick 0.1 s included); one process holds gateway, "
        "sandbox and chargers; target: answer p50 < 5 ms, CDR push >= 1,000/s"
    )
    return table


async def _starts(
    gateway: Gateway, emsp: SandboxEmsp, n_chargers: int, starts: int
) -> tuple[list[float], list[float], int]:
    async def registered() -> bool:
        link = await gateway.store.link("emsp")
        return link is not None and link.state is LinkState.REGISTERED

    for _ in range(600):
        if await registered() and emsp.registration is not None:
            break
        await asyncio.sleep(0.05)
    assert gateway.csms is not None
    url = f"ws://127.0.0.1:{gateway.csms.port}{gateway.config.ocpp.path}"
    chargers = [
        SimCharger(cp, url, connectors=1, call_timeout=10) for cp in charger_ids(n_chargers)
    ]
    answers: list[float] = []
    results: list[float] = []
    errors = 0
    try:
        for ch in chargers:
            await ch.connect()
        for i in range(starts + 1):  # the first is a warm-up, not counted
            k = i % n_chargers
            ch = chargers[k]
            ref = f"bench-{i}"
            body = {"token": _token(), "location_id": f"BENCH-ST-{k // CHARGERS_PER_STATION:04d}",
                    "evse_uid": evse_id(k)}  # fmt: skip
            started = time.perf_counter()
            answer = await emsp.command("START_SESSION", body, ref=ref)
            answered = time.perf_counter() - started
            ok = answer.get("data", {}).get("result") == "ACCEPTED"
            got = ok and await _until(lambda r=ref: emsp.results(r), 10)
            finished = time.perf_counter() - started
            if await _until(lambda c=ch: c.transaction_id(1) is not None, 10):
                tx = ch.transaction_id(1)
                assert tx is not None
                await ch.stop_transaction(tx, 10)
                await ch.status(1, "Available")
                await _until(lambda c=ch: c.transaction_id(1) is None, 10)
            if i == 0:
                continue
            if not got:
                errors += 1
                if errors <= 3:
                    print(f"# start {i} failed: {answer.get('data') or answer}", flush=True)
                continue
            answers.append(answered)
            results.append(finished)
    finally:
        for ch in chargers:
            await ch.close()
    return answers, results, errors


async def _cdr_push(gateway: Gateway, emsp: SandboxEmsp, count: int) -> tuple[float, int]:
    def ours() -> int:
        return sum(1 for k in emsp.cdrs if k.startswith("bench-cdr-"))

    rows = []
    for i in range(count):
        sid = f"bench-cdr-{i:07d}"
        cdr = Cdr(
            session_id=sid,
            evse_id=evse_id(i % 10),
            user=User(UserKind.RFID, CARD),
            session_interval=Interval("2026-01-01T10:00:00+00:00", "2026-01-01T11:00:00+00:00"),
            partner_identifier="",
            charging_interval=Interval("2026-01-01T10:00:00+00:00", "2026-01-01T11:00:00+00:00"),
            energy_kwh=7.5,
        )
        rows.append(NewOutbox("emsp", Owed.CDR, sid, cdr_to_dict(cdr)))
    await gateway.store.enqueue(rows, gateway.clock())
    await _until(lambda: ours() >= count, count / 50 + 60, 0.05)
    times = sorted(
        r.at
        for r in emsp.received
        if r.module == "cdrs"
        and isinstance(r.body, dict)
        and str(r.body.get("id")).startswith("bench-cdr-")
    )
    delivered = ours()
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return rate, delivered
