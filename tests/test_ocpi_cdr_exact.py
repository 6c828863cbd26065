"""What a session and its CDR tell an OCPI partner about the driver and the place: the
partner's own token (its contract_id) when it gave us the card, how the gateway authorized
it (WHITELIST for a card on its list, COMMAND for a remote start), and the connector the
charger really used on an EVSE of several connectors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from tests.conftest import Harness
from tests.ocpi_gateway_support import registered_with_emsp, until
from tests.ocpi_models import validate

CARD, CONTRACT = "0C0C0C0C", "NL-EMS-C00000042-7"
SHARED = "DE*CPO*E2001"  # CP-MUC-DC1 connectors 1 and 2


@pytest.fixture
async def gw(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[tuple[Harness, SandboxEmsp]]:
    async with registered_with_emsp(tmp_path, emp, card=CARD) as pair:
        yield pair


def bodies(emsp: SandboxEmsp, module: str, method: str) -> list[Any]:
    return [r.body for r in emsp.received if r.module == module and r.method == method]


async def test_a_listed_card_on_the_second_connector_is_billed_as_the_partner_knows_it(
    gw: tuple[Harness, SandboxEmsp],
) -> None:
    h, emsp = gw
    reg = emsp.registration
    assert reg is not None
    token = emsp.tokens.token(CARD, whitelist="ALWAYS", contract_id=CONTRACT)
    tokens = reg.endpoints["tokens"]
    put = await emsp.send("PUT", f"{tokens}/NL/EMS/{CARD}", reg.token_theirs, token)
    assert put["status_code"] == 1000, put
    async with h.charger("CP-MUC-DC1") as cp:
        await cp.connect()
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)  # a plausible 12 kWh hour
        tx = await cp.start_transaction(2, CARD, meter_start=1000, timestamp=an_hour_ago)
        assert tx > 0
        await until(lambda: bodies(emsp, "sessions", "PUT"), "the Session PUT")
        await cp.stop_transaction(tx, 13_000)
        await until(lambda: emsp.cdrs, "the CDR POST")
    (cdr,) = emsp.cdrs.values()
    validate("Cdr", cdr)
    assert cdr["auth_method"] == "WHITELIST"
    assert cdr["cdr_token"]["contract_id"] == CONTRACT and cdr["cdr_token"]["type"] == "RFID"
    assert cdr["cdr_location"]["evse_id"] == SHARED
    assert cdr["cdr_location"]["connector_id"] == "2"
    assert cdr["total_energy"] == pytest.approx(12.0)
    session = bodies(emsp, "sessions", "PUT")[0]
    assert session["connector_id"] == "2" and session["auth_method"] == "WHITELIST"
    assert session["cdr_token"]["contract_id"] == CONTRACT
    # The GET lists tell the same.
    listed = await emsp.send("GET", reg.endpoints["cdrs"], reg.token_theirs)
    (got,) = listed["data"]
    assert got["cdr_location"]["connector_id"] == "2"
    assert got["cdr_token"]["contract_id"] == CONTRACT and got["auth_method"] == "WHITELIST"
    sessions = await emsp.send("GET", reg.endpoints["sessions"], reg.token_theirs)
    assert [s["connector_id"] for s in sessions["data"]] == ["2"]
    assert sessions["data"][0]["cdr_token"]["contract_id"] == CONTRACT
