"""idTags are CiString20: over 20 characters an Authorize or StartTransaction gets a CallError
naming the field; a StopTransaction is still taken (a stop is never lost), without the idTag."""

from __future__ import annotations

from pathlib import Path

from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.test_csms_support import TS, RawCharger, config, running

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X1"}
LONG = "04A2B3C4D5E6F7_serial12345"  # 26 characters


async def test_over_long_id_tags_are_refused_in_authorize_and_start(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with running(config(tmp_path, emp), emp) as h, RawCharger.open(h.ocpp_url) as raw:
        authorize = await raw.call("Authorize", {"idTag": LONG})
        assert authorize[0] == 4 and authorize[2] == "PropertyConstraintViolation", authorize
        assert authorize[3].startswith("Authorize.idTag: expected at most 20 characters")
        assert authorize[4] == {"field": "Authorize.idTag"}
        start = {"connectorId": 1, "idTag": LONG, "meterStart": 0, "timestamp": TS}
        started = await raw.call("StartTransaction", start)
        assert started[0] == 4 and started[2] == "PropertyConstraintViolation", started
        assert started[4] == {"field": "StartTransaction.idTag"}
        # Exactly 20 is fine, and the connection stayed up.
        ok = await raw.call("Authorize", {"idTag": LONG[:20]})
        assert ok[0] == 3
        rows = await h.store.db.all("SELECT id FROM transactions")
        assert rows == []


async def test_a_stop_with_an_over_long_id_tag_is_taken_without_it(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with running(config(tmp_path, emp), emp) as h, RawCharger.open(h.ocpp_url) as raw:
        start = {"connectorId": 1, "idTag": "04A2B3C4", "meterStart": 0, "timestamp": TS}
        started = await raw.call("StartTransaction", start)
        assert started[0] == 3
        tx = started[2]["transactionId"]
        stop = {"transactionId": tx, "meterStop": 1500, "timestamp": TS, "idTag": LONG}
        stopped = await raw.call("StopTransaction", stop)
        assert stopped[0] == 3 and "idTagInfo" not in stopped[2], stopped
        row = await h.store.db.one("SELECT meter_stop_wh FROM transactions WHERE id = ?", (tx,))
        assert row is not None and row[0] == 1500
