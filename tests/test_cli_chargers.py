"""`cpo-gateway chargers list|show`: connection, boot data, local-list state, connectors and
EVSE statuses, read from the database of a running gateway; exit codes from a child process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.conftest import Harness, write_config
from tests.test_oioi_whitelist import cli


def _table(out: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    header, *rows = [line.split("\t") for line in out.splitlines()]
    return header, {row[0]: dict(zip(header, row, strict=True)) for row in rows}


async def _until_disconnected(harness: Harness, cp_id: str) -> None:
    async with asyncio.timeout(10):
        while True:
            row = await harness.store.charger_row(cp_id)
            if row is not None and not row.connected:
                return
            await asyncio.sleep(0.05)


async def test_chargers_list_shows_connection_boot_and_local_list(harness: Harness) -> None:
    config = harness.gateway.config.path
    async with harness.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.status(1, "Charging")
        code, out, err = await cli(config, "chargers", "list", "--tsv")
        assert code == 0, err
        header, rows = _table(out)
        assert header[:4] == ["charger", "connected", "last_seen", "boot"]
        assert set(rows) == {"CP-BER-001", "CP-MUC-DC1", "CP-HH-001"}
        ber = rows["CP-BER-001"]
        assert (ber["connected"], ber["boot"], ber["vendor"], ber["model"]) == (
            "yes",
            "Accepted",
            "cpo-gateway-sim",
            "SimCharger",
        )
        assert ber["firmware"] == "1.0.0" and ber["booted_at"] != "-" and ber["last_seen"] != "-"
        assert ber["list_push"].startswith("current")
        assert rows["CP-HH-001"]["connected"] == "never"
        code, aligned, _ = await cli(config, "chargers", "list")
        assert code == 0
        first, *_ = aligned.splitlines()
        assert first.split() == header  # the same columns, aligned for people
    await _until_disconnected(harness, "CP-BER-001")
    _, out, _ = await cli(config, "chargers", "list", "--tsv")
    assert _table(out)[1]["CP-BER-001"]["connected"] == "no"


async def test_chargers_show_adds_connectors_and_evse_statuses(harness: Harness) -> None:
    config = harness.gateway.config.path
    async with harness.charger("CP-BER-001") as cp:
        await cp.connect()
        await cp.status(1, "Charging")
        await cp.status(2, "Faulted", error_code="GroundFailure")
        async with asyncio.timeout(10):  # the EVSE status is decided after the answer
            while len(await harness.store.evse_status_rows()) < 2:
                await asyncio.sleep(0.05)
        code, out, err = await cli(config, "chargers", "show", "CP-BER-001")
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.split("\n\n")[0].splitlines())
    assert fields["connected"].strip() == "yes" and fields["vendor"].strip() == "cpo-gateway-sim"
    assert fields["serial"].strip() == "CP-BER-001"
    connectors = [line.split() for line in out.split("\n\n")[1].splitlines()]
    assert connectors[0] == [
        "connector", "evse_id", "state", "error", "reported_at", "evse_status", "changed",
    ]  # fmt: skip
    by_id = {row[0]: row for row in connectors[1:]}
    assert by_id["1"][1:4] == ["DE*CPO*E1001*1", "Charging", "NoError"]
    assert by_id["1"][5] == "Occupied"
    assert by_id["2"][1:4] == ["DE*CPO*E1001*2", "Faulted", "GroundFailure"]
    assert by_id["2"][5] == "Offline"
    code, _, err = await cli(config, "chargers", "show", "CP-NOWHERE")
    assert code == 1 and "no such charger" in err


@pytest.mark.sqlite_only(reason="fills the SQLite file with random bytes")
@pytest.mark.parametrize("command", [("list",), ("show", "CP-BER-001")])
async def test_chargers_on_a_corrupt_database_exit_73(tmp_path: Path, command: tuple[str]) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "state" / "gateway.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(os.urandom(8192))
    code, _, err = await cli(config, "chargers", *command)
    assert code == 73
    assert err.strip().startswith("error: database not usable") and len(err.splitlines()) == 1


async def test_a_usage_error_exits_64(tmp_path: Path) -> None:
    code, _, _ = await cli(write_config(tmp_path), "chargers", "show")
    assert code == 64
