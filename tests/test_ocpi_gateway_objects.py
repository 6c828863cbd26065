"""The running gateway serves an OCPI partner beside an OIOI EMP: it registers with the
sandbox eMSP at start, pushes every station as an OCPI Location to its receiver through the
outbox, and answers its GET lists (locations, tariffs) with valid objects."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from tests.conftest import running_gateway, write_config
from tests.ocpi_models import validate

OCPI = """
[ocpi]
host = "127.0.0.1"
port = 0
country_code = "DE"
party_id = "CPO"
business_name = "Test CPO"
"""


async def test_an_ocpi_partner_gets_locations_pushed_and_lists_them_beside_oioi(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with SandboxEmsp() as emsp:
        extra = (
            f"""
[[emp]]
name = "emsp"
protocol = "ocpi"
versions_url = "{emsp.versions_url}"
token_a = "{emsp.token_a}"
request_timeout_s = 5.0
"""
            + OCPI
        )
        path = write_config(tmp_path, emp_url=emp.url, extra=extra)
        cfg = load_config(path, {})
        async with running_gateway(Gateway(cfg), emp) as h:
            gw = h.gateway
            assert gw.ocpi is not None
            ids = {s.id for s in cfg.catalogue.stations}
            for _ in range(400):  # bounded: registration, then the outbox's next rounds
                pushed = {
                    r.path.rsplit("/", 1)[1] for r in emsp.received if r.module == "locations"
                }
                if pushed >= ids:
                    break
                await asyncio.sleep(0.05)
            puts = [r for r in emsp.received if r.module == "locations" and r.method == "PUT"]
            assert {r.body["id"] for r in puts} >= ids
            for r in puts:
                validate("Location", r.body)
                assert r.headers["OCPI-from-party-id"] == "CPO"
            reg = emsp.registration
            assert reg is not None
            listed = await emsp.send("GET", reg.endpoints["locations"], reg.token_theirs)
            assert listed["status_code"] == 1000
            assert sorted(d["id"] for d in listed["data"]) == sorted(ids)
            tariffs = await emsp.send("GET", reg.endpoints["tariffs"], reg.token_theirs)
            assert [t["id"] for t in tariffs["data"]] == ["AC-STANDARD"]
            validate("Tariff", tariffs["data"][0])
            # The OIOI EMP got its station-posts all the same.
            for _ in range(200):
                if len(emp.calls("station-post")) >= len(ids):
                    break
                await asyncio.sleep(0.05)
            assert len(emp.calls("station-post")) >= len(ids)
