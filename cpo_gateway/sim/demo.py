"""`cpo-gateway demo`: the whole story on loopback, no configuration needed.

A gateway on free loopback ports with its database in a temporary directory, two roaming
partners served at once (the sandbox OIOI EMP and the sandbox OCPI 2.2.1 eMSP, which the
gateway registers with at start), and simulated chargers for the demo stations: three speak
OCPP 1.6, one OCPP 2.0.1. It plays: stations and Locations pushed, statuses to both partners,
the eMSP reading Locations and pushing a token, both partners starting a session on the same
charger at the same time (OIOI session-start on one connector, OCPI START_SESSION on the
other), meter values, stops ending in a CDR for each (the eMSP also gets its CommandResults and
the Session PUT/PATCH), the same on the 2.0.1 charger (RequestStartTransaction, TransactionEvents), a
whitelisted card charging while its charger is cut off, an unknown card refused by
rfid-verify, and a charger that loses its connection and comes back. Then it keeps running with copy-paste curl
commands until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from ocpp.exceptions import OCPPError

from cpo_gateway import logs, runtime
from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.charger.simulator import ChargerOffline, SimCharger
from cpo_gateway.sim.charger201.simulator import SimCharger201
from cpo_gateway.sim.demo_ocpi import DemoEmsp
from cpo_gateway.sim.demo_ocpi import config as ocpi_config
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from cpo_gateway.sim.timeline import Timeline

INBOUND_KEY = "demo-inbound-key-0001"
OUTBOUND_KEY = "demo-outbound-key-0001"
PARTNER = "demo-partner-identifier-01"
EVCO = "DE-8PS-C12345-6"
CARD = "04523022AA4881"  # on the EMP's whitelist
UNKNOWN_CARD = "DEADBEEF"  # unknown to the EMP: rfid-verify answers 191
EVSE_201 = "DE*CPO*E4001*1"  # served by the OCPP 2.0.1 charger CP-KOE-201, EVSE 1
OIOI_EVSE, OCPI_EVSE = "DE*CPO*E1001*1", "DE*CPO*E1001*2"  # both on CP-BER-001
OCPI_LOCATION = "DE-BER-ALEX-01"
OIOI_WH, OCPI_WH = (250, 520, 780), (300, 610, 900)  # the two sessions' meter readings
DEMO_STATIONS = 4
CONFIG = """
[gateway]
state_dir = "{state}"
stations_file = "stations.toml"
shutdown_grace_s = 5.0

[ocpp]
host = "127.0.0.1"
port = 0
heartbeat_interval_s = 60
offline_grace_s = 2.0
call_timeout_s = 5.0

[oioi]
host = "127.0.0.1"
port = 0

[[emp]]
name = "sandbox"
url = "{emp_url}"
api_key = "{outbound}"
inbound_api_key = "{inbound}"
partner_identifier = "{partner}"
online_authorization = true
offline_policy = "reject"

[sessions]
status_debounce_s = 0.3
update_interval_s = 1.0

[outbox]
tick_s = 0.2

[admin]
host = "127.0.0.1"
port = 0
token_file = "admin.token"

[logging]
level = "warning"
format = "console"
"""
CONSOLE_USER = "demo"


def _write_config(directory: Path, emp_url: str, extra: str = "") -> Path:
    # A fresh login token per run: the console listens on loopback only, but a fixed token in
    # the source would be a known password all the same.
    (directory / "admin.token").write_text(secrets.token_urlsafe(18), encoding="utf-8")
    stations = resources.files("cpo_gateway.sim").joinpath("demo_stations.toml").read_text("utf-8")
    (directory / "stations.toml").write_text(stations, encoding="utf-8")
    path = directory / "gateway.toml"
    path.write_text(
        CONFIG.format(
            state=directory / "state",
            emp_url=emp_url,
            outbound=OUTBOUND_KEY,
            inbound=INBOUND_KEY,
            partner=PARTNER,
        )
        + extra,
        encoding="utf-8",
    )
    return path


async def _settle(tl: Timeline, seconds: float = 0.6) -> None:
    await asyncio.sleep(seconds)
    tl.poll()


async def play(
    out: TextIO, *, keep_running: bool, stop: asyncio.Event | None = None
) -> dict[str, Any]:
    """Run the story; returns counters the tests check. Blocks until `stop` if keep_running."""
    stop = stop or asyncio.Event()
    logs.configure("warning", "console", sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cpo-gateway-demo-") as tmp:
        async with (
            SandboxEmp(api_key=OUTBOUND_KEY, verify_codes={UNKNOWN_CARD.rjust(8, "0"): 191}) as emp,
            SandboxEmsp() as emsp,
        ):
            cfg = load_config(_write_config(Path(tmp), emp.url, ocpi_config(emsp)), {})
            gateway = Gateway(cfg)
            await gateway.start()
            assert gateway.csms is not None and gateway.oioi is not None
            ocpp_url = f"ws://127.0.0.1:{gateway.csms.port}{cfg.ocpp.path}"
            oioi_url = f"http://127.0.0.1:{gateway.oioi.port}{cfg.oioi.path}"
            ber = SimCharger("CP-BER-001", ocpp_url, call_timeout=5, meter_interval_s=0)
            muc = SimCharger("CP-MUC-DC1", ocpp_url, call_timeout=5)
            hh = SimCharger("CP-HH-001", ocpp_url, call_timeout=5)
            koe = SimCharger201("CP-KOE-201", ocpp_url, call_timeout=5)
            cps = DemoChargers(ber, muc, hh, koe)
            chargers = cps.all()
            oioi = gateway.oioi
            tl = Timeline(out, emp, chargers, inbound=lambda: oioi.requests, emsp=emsp)
            ocpi = DemoEmsp(emsp, gateway, tl)
            tl.header()
            follower = asyncio.create_task(tl.follow(), name="demo-timeline")
            # Like real chargers, the demo's heartbeat: without it the gateway closes them as
            # silent after three intervals, and a session-start from the user's curl gets 310.
            beats = asyncio.create_task(heartbeats(chargers), name="demo-heartbeats")
            try:
                async with EmpClient(oioi_url, INBOUND_KEY) as client:
                    await _story(tl, emp, client, cps, ocpi)
                    tl.flush()
                    if keep_running:
                        out.write(_curl_help(client, oioi_url, ocpp_url, cfg.gateway.database))
                        out.write(ocpi.help_text())
                        out.write(_console_help(gateway, Path(tmp)))
                        out.flush()
                        await stop.wait()
                        tl.flush()
                    else:
                        out.write(_the_end(emp, ocpi))
                        out.flush()
            finally:
                for task in (follower, beats):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                for cp in chargers:
                    await cp.close()
                await gateway.stop()
            return {
                "stations": len(emp.stations),
                "cdrs": len(emp.cdrs),
                "statuses": len(emp.calls("connector-post-status")),
                "verify": len(emp.calls("rfid-verify")),
                "ocpi": dict(ocpi.seen),
                "ocpi_locations_put": ocpi.count("locations", "PUT"),
                "ocpi_status_patches": ocpi.count("locations", "PATCH"),
                "ocpi_session_puts": ocpi.count("sessions", "PUT"),
                "ocpi_session_patches": ocpi.count("sessions", "PATCH"),
                "ocpi_cdrs": dict(emsp.cdrs),
                "ocpi_emsp_registered": emsp.registration is not None,
            }


@dataclass(frozen=True)
class DemoChargers:
    """The demo's chargers: three OCPP 1.6 ones and one OCPP 2.0.1 station."""

    ber: SimCharger
    muc: SimCharger
    hh: SimCharger
    koe: SimCharger201

    def all(self) -> list[SimCharger | SimCharger201]:
        return [self.ber, self.muc, self.hh, self.koe]


async def _story(
    tl: Timeline, emp: SandboxEmp, client: EmpClient, cps: DemoChargers, ocpi: DemoEmsp
) -> None:
    koe = cps.koe
    tl.chapter(
        "1. The gateway starts: station-post to the OIOI EMP; it registers with the OCPI eMSP "
        "(credentials, token A) and PUTs its Locations"
    )
    await emp.wait_for(lambda: len(emp.stations) == DEMO_STATIONS, timeout=10)
    await ocpi.registered()
    await emp.wait_for(lambda: ocpi.count("locations", "PUT") >= DEMO_STATIONS, timeout=10)
    await _settle(tl, 0.2)

    tl.chapter(
        "2. Chargers connect and report their connectors (StatusNotification -> "
        "connector-post-status and EVSE status PATCH)"
    )
    for cp in cps.all():
        await cp.connect()
        for connector in (1, 2):
            await cp.status(connector, "Available")
    tl.note(f"CP-KOE-201 speaks {koe.subprotocol}: its EVSEs 1 and 2 are connectors 1 and 2")
    await _settle(tl, 1.0)

    tl.chapter(
        "3. The EMP posts its RFID whitelist; the gateway pushes it to the chargers (SendLocalList)"
    )
    sent_at = tl.emp_request("rfid-post")
    status, body = await client.rfid_post(PARTNER, [CARD, "12345678"])
    tl.emp_call("rfid-post", {"rfids": 2}, status, body, sent_at)
    await _settle(tl, 1.0)
    await _story_two_partners(tl, emp, client, cps.ber, ocpi)
    await _story201(tl, emp, client, koe)
    await _story_offline(tl, emp, cps)


async def _story_two_partners(
    tl: Timeline, emp: SandboxEmp, client: EmpClient, ber: SimCharger, ocpi: DemoEmsp
) -> None:
    tl.chapter(
        "4. Two partners on CP-BER-001 at once: the OCPI eMSP reads Locations and pushes a "
        "token; the OIOI EMP starts on connector 1, the eMSP (START_SESSION) on connector 2"
    )
    await ocpi.read_locations()
    await ocpi.push_token()
    await _settle(tl, 0.5)
    sent_at = tl.emp_request("session-start")
    status, body = await client.session_start(OIOI_EVSE, EVCO)
    start = {"connector-id": OIOI_EVSE, "evco-id": EVCO}
    tl.emp_call("session-start", start, status, body, sent_at)
    session_id = body.get("session-start", {}).get("session-id")
    await ocpi.start(OCPI_LOCATION, OCPI_EVSE, ref="start")
    await emp.wait_for(lambda: ber.transaction_id(1) is not None, timeout=10)
    await emp.wait_for(lambda: ber.transaction_id(2) is not None, timeout=10)
    await ocpi.result("start")
    ocpi_session = await ocpi.session_id(OCPI_EVSE)
    tx_oioi, tx_ocpi = ber.transaction_id(1) or 0, ber.transaction_id(2) or 0
    for oioi_wh, ocpi_wh in zip(OIOI_WH, OCPI_WH, strict=True):
        await ber.meter_values(1, tx_oioi, oioi_wh)
        await ber.meter_values(2, tx_ocpi, ocpi_wh)
        await _settle(tl, 0.6)  # the eMSP gets a Session PATCH at most every update_interval_s
    await ocpi.patched(ocpi_session)  # shown before the stop (which would supersede it)
    sent_at = tl.emp_request("session-stop")
    status, body = await client.session_stop(OIOI_EVSE, EVCO, session_id)
    tl.emp_call("session-stop", {"session-id": str(session_id)[:8]}, status, body, sent_at)
    await emp.wait_for(lambda: session_id in emp.cdrs, timeout=10)
    await ocpi.stop(ocpi_session, ref="stop")
    await ocpi.result("stop")
    cdr = await ocpi.cdr(ocpi_session)
    await _settle(tl, 0.8)
    tl.note(
        f"the eMSP's CDR {ocpi_session[:8]}: {cdr.get('total_energy')} kWh for token "
        f"{cdr.get('cdr_token', {}).get('uid')}; the OIOI EMP's: "
        f"{emp.cdrs[session_id].get('energy-consumed')} kWh"
    )


async def _story201(tl: Timeline, emp: SandboxEmp, client: EmpClient, koe: SimCharger201) -> None:
    tl.chapter(
        "5. The same on the OCPP 2.0.1 charger: RequestStartTransaction, TransactionEvent "
        "Started / Updated / Ended, CDR"
    )
    sent_at = tl.emp_request("session-start")
    status, body = await client.session_start(EVSE_201, EVCO)
    tl.emp_call("session-start", {"connector-id": EVSE_201, "evco-id": EVCO}, status, body, sent_at)
    session_id = body.get("session-start", {}).get("session-id")
    await emp.wait_for(lambda: koe.transaction_id(1) is not None, timeout=10)
    tx_id = koe.transaction_id(1) or ""
    for wh in (300, 610, 900):
        await koe.meter_values(1, tx_id, wh)
    await _settle(tl, 0.3)
    sent_at = tl.emp_request("session-stop")
    status, body = await client.session_stop(EVSE_201, EVCO, session_id)
    tl.emp_call("session-stop", {"session-id": str(session_id)[:8]}, status, body, sent_at)
    await emp.wait_for(lambda: session_id in emp.cdrs, timeout=10)
    await _settle(tl, 0.8)


async def _story_offline(tl: Timeline, emp: SandboxEmp, cps: DemoChargers) -> None:
    ber, muc, hh = cps.ber, cps.muc, cps.hh
    tl.chapter("6. A whitelisted card charges while its charger is cut off from the gateway")
    await hh.disconnect()
    tl.note("CP-HH-001 lost its connection")
    local_ok = hh.authorize_locally(CARD)
    tl.note(
        f"CP-HH-001 checks {CARD} against its local list: {'accepted' if local_ok else 'unknown'}"
    )
    started = datetime.now(UTC) - timedelta(minutes=40)
    placeholder = await hh.start_transaction(1, CARD, meter_start=1000, timestamp=started)
    await hh.stop_transaction(placeholder, 9200, timestamp=started + timedelta(minutes=35))
    tl.note(f"CP-HH-001 queued Start and Stop ({hh.pending} messages) with their original times")
    tl.note("CP-HH-001 reconnects (without booting) and replays its queue")
    await hh.connect(boot=False)
    await emp.wait_for(lambda: len(emp.cdrs) >= 3, timeout=10)
    await _settle(tl, 0.5)

    tl.chapter("7. An unknown card is refused: the gateway asks the EMP (rfid-verify)")
    answer = await muc.authorize(UNKNOWN_CARD)
    tl.note(f"CP-MUC-DC1 was told: {answer}")
    await _settle(tl, 0.3)

    tl.chapter("8. A charger loses its connection and comes back")
    await ber.disconnect()
    tl.note("CP-BER-001 disconnected; after the grace period its EVSEs go Offline")
    await emp.wait_for(lambda: emp.statuses.get("DE*CPO*E1001*1") == "Offline", timeout=10)
    await _settle(tl, 0.2)
    tl.note("CP-BER-001 reconnects without booting: the gateway asks for its statuses")
    await ber.connect(boot=False)
    await emp.wait_for(lambda: emp.statuses.get("DE*CPO*E1001*1") == "Available", timeout=10)
    await _settle(tl, 0.3)


async def heartbeats(
    chargers: Sequence[SimCharger | SimCharger201], period_s: float | None = None
) -> None:
    """Each connected charger heartbeats, by default at half the interval its Boot answer set
    (at least every 5 s apart)."""
    while True:
        interval = min(cp.heartbeat_interval or 60 for cp in chargers)
        await asyncio.sleep(period_s if period_s is not None else max(5.0, interval / 2))
        for cp in chargers:
            if cp.connected:
                # Offline or closing: the next beat tries again.
                with contextlib.suppress(ChargerOffline, OCPPError):
                    await cp.heartbeat()


def _the_end(emp: SandboxEmp, ocpi: DemoEmsp) -> str:
    return (
        f"\n== Done: the EMP received {len(emp.stations)} stations, {len(emp.cdrs)} CDRs and "
        f"{len(emp.calls('connector-post-status'))} status updates; the OCPI eMSP "
        f"({ocpi.seen.get('link')}) received {ocpi.count('locations', 'PUT')} Locations, "
        f"{len(ocpi.emsp.cdrs)} CDR(s), {ocpi.count('locations', 'PATCH')} EVSE status updates and "
        f"{ocpi.count('sessions', 'PUT') + ocpi.count('sessions', 'PATCH')} session updates. "
        "Run scripts/demo without --once to keep the gateway running and send it requests "
        "yourself.\n"
    )


def _console_help(gateway: Gateway, directory: Path) -> str:
    if gateway.console is None:
        return ""
    token = (directory / "admin.token").read_text(encoding="utf-8").strip()
    return (
        f"Console: http://127.0.0.1:{gateway.console.port}/  "
        f"(log in as {CONSOLE_USER!r} with the token {token})\n"
    )


def _curl_help(client: EmpClient, oioi_url: str, ocpp_url: str, database: Path) -> str:
    return (
        "\n== Your turn. The gateway keeps running (Ctrl-C stops everything).\n"
        f"OIOI endpoint: {oioi_url}   OCPP endpoint: {ocpp_url}/<charge point id>\n\n"
        "Start a session on DE*CPO*E1001*1:\n"
        f"  {client.curl_session_start('DE*CPO*E1001*1', EVCO)}\n\n"
        "Stop it (put the session-id from the answer in place of SESSION_ID):\n"
        f"  {client.curl_session_stop('DE*CPO*E1001*1', EVCO, 'SESSION_ID')}\n\n"
        f"Health and metrics: {oioi_url.rsplit('/api', 1)[0]}/healthz  .../metrics\n"
        f"Database: {database}\n"
    )


def run_demo(*, keep_running: bool = True) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await play(sys.stdout, keep_running=keep_running, stop=stop)
        return 0

    return runtime.run(main())
