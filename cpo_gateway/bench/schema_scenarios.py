"""What checking payloads against the OCA schemas costs: the validators per payload, and the
1.6 mixed load with the check on and off in the same run (two gateways side by side,
`rounds` times; the table shows each run and the medians).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jsonschema

from cpo_gateway.bench.charger import VENDOR, meter_payload, now_iso
from cpo_gateway.bench.ocpp_scenarios import Context, Figures, ocpp_run
from cpo_gateway.bench.report import Table, ms, num, percentile, ratio
from cpo_gateway.csms import quirks
from cpo_gateway.csms.schemas import SchemaSet


def _payloads() -> list[tuple[str, dict[str, Any]]]:
    """The Calls of the mixed load, as the load generator sends them."""
    return [
        ("Heartbeat", {}),
        ("Authorize", {"idTag": "04A2B3C4D5E6F7"}),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "04A2B3C4", "meterStart": 1000, "timestamp": now_iso()},
        ),
        ("MeterValues", meter_payload(1, 17, 12_345)),
        (
            "StopTransaction",
            {
                "transactionId": 17,
                "meterStop": 20_000,
                "timestamp": now_iso(),
                "reason": "Local",
                "idTag": "04A2B3C4",
            },
        ),
        ("BootNotification", dict(VENDOR)),
    ]


def _per_call_us(check: Callable[[], object], budget_s: float = 0.2) -> float:
    """Microseconds per call of `check`, over at least `budget_s` of repetitions."""
    n, started = 0, time.perf_counter()
    while True:
        for _ in range(100):
            check()
        n += 100
        elapsed = time.perf_counter() - started
        if elapsed >= budget_s:
            return elapsed / n * 1e6


def validators(repeat_s: float = 0.2) -> Table:
    """fastjsonschema (what the gateway uses) against jsonschema (what the ocpp package uses)
    on the same payloads; the quirks pass on top."""
    table = Table(
        "schema check per payload, OCPP 1.6 (microseconds)",
        ("action", "fastjsonschema us", "jsonschema us", "jsonschema/fast", "quirks pass us"),
    )
    schemas = SchemaSet.load("1.6")
    fast_total = slow_total = 0.0
    for action, payload in _payloads():
        schema = schemas.request_schema(action)
        assert schemas.check_call(action, payload) is None, action
        slow_validator = jsonschema.Draft4Validator(schema)
        fast = _per_call_us(partial(schemas.check_call, action, payload), repeat_s)
        slow = _per_call_us(partial(slow_validator.is_valid, payload), repeat_s)
        mend = _per_call_us(partial(quirks.normalise, schema, payload), repeat_s)
        fast_total, slow_total = fast_total + fast, slow_total + slow
        table.add(action, num(fast, 1), num(slow, 1), ratio(slow, fast), num(mend, 1))
    table.add(
        "all of them", num(fast_total, 1), num(slow_total, 1), ratio(slow_total, fast_total), ""
    )
    started = time.perf_counter()
    SchemaSet("1.6")
    v16_s = time.perf_counter() - started
    started = time.perf_counter()
    SchemaSet("2.0.1")
    table.notes.append(
        f"compiling every schema once at start: 1.6 {v16_s:.2f} s, "
        f"2.0.1 {time.perf_counter() - started:.2f} s"
    )
    return table


async def mixed_checked(
    ctx: Context, n: int = 100, seconds: float = 20.0, rounds: int = 3
) -> Table:
    """The 1.6 mixed load against two gateways at once, schema check off and on.

    Both run at the same time, each with its own load generator, over the same window: a
    neighbour's load on a shared machine weighs on both alike, which sequential runs cannot
    promise (their figures moved by 20 % from one run to the next here). Each side gets half
    the machine, so the absolute figures are lower than the mixed scenario's."""
    table = Table(
        f"1.6 mixed load, {n} chargers each, {seconds:g} s closed loop, two gateways at once: "
        "schema check off / on",
        ("run", "schemas", "calls", "calls/s", "p50 ms", "p99 ms", "server CPU s", "errors"),
    )
    runs: dict[bool, list[Figures]] = {False: [], True: []}
    half = Context(ctx.workdir, workers=max(1, ctx.workers // 2), runs=ctx.runs)
    for i in range(rounds):
        together = asyncio.Barrier(2)
        # Which gateway starts first alternates by round, so that an advantage of the first
        # started (its processes spawned and warmed first) cannot pass for the check's cost.
        order = (False, True) if i % 2 == 0 else (True, False)
        pair = await asyncio.gather(
            *(
                ocpp_run(
                    half,
                    "gateway",
                    "mixed",
                    n,
                    seconds,
                    validate_schemas=checked,
                    together=together,
                )
                for checked in order
            )
        )
        for checked, f in sorted(zip(order, pair, strict=True), key=lambda cf: cf[0]):
            runs[checked].append(f)
            lat = f.load.all_latencies()
            errors = sum(f.load.errors.values()) + sum(
                sum(r["failed"].values()) for r in f.load.ready
            )
            table.add(
                i + 1,
                "on" if checked else "off",
                f.load.answered,
                num(f.load.answered / f.window_s),
                ms(percentile(lat, 50)),
                ms(percentile(lat, 99)),
                num(f.server.cpu_s, 2),
                errors,
            )
    ctx.runs = half.runs
    rate = {
        c: statistics.median(f.load.answered / f.window_s for f in fs) for c, fs in runs.items()
    }
    p99 = {
        c: statistics.median(percentile(f.load.all_latencies(), 99) for f in fs)
        for c, fs in runs.items()
    }
    cpu = {
        c: statistics.median(f.server.cpu_s / max(1, f.load.answered) for f in fs)
        for c, fs in runs.items()
    }
    table.add("median", "off", "", num(rate[False]), "", ms(p99[False]), "", "")
    table.add("median", "on", "", num(rate[True]), "", ms(p99[True]), "", "")
    table.add(
        "on/off", "", "", ratio(rate[True], rate[False]), "", ratio(p99[True], p99[False]), "", ""
    )
    table.notes.append(
        f"server CPU per call: off {cpu[False] * 1e6:.0f} us, on {cpu[True] * 1e6:.0f} us"
    )
    table.notes.append("target: on/off calls/s >= 0.90x and p99 <= 1.10x")
    return table


async def schemas(ctx: Context, n: int = 100, seconds: float = 20.0, rounds: int = 4) -> Table:
    """Both tables of this module, the validators' first (printed as notes of the second)."""
    micro = validators()
    table = await mixed_checked(ctx, n, seconds, rounds)
    table.notes[:0] = micro.render().splitlines()
    return table
