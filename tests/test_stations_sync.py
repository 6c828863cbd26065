"""Station sync across restarts: post everything once, nothing when unchanged, changed stations
again, removed stations as deleted; statuses wait for their station; check-config refuses a
connector change of a posted station."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import Harness, write_config
from tests.test_oioi_whitelist import cli
from tests.test_outbox_e2e import outbox_rows, running, until

HH = '[[station]]\nid = "DE-HH-HAFEN-01"'


def edit_stations(config: Path, old: str, new: str) -> None:
    stations = config.parent / "stations.toml"
    text = stations.read_text()
    assert old in text
    stations.write_text(text.replace(old, new, 1))


def without_hamburg(config: Path) -> None:
    stations = config.parent / "stations.toml"
    text = stations.read_text()
    start, end = text.index(HH), text.index("# Per-charger")
    stations.write_text(text[:start] + text[end:])


async def delivered_station_posts(config: Path, emp: SandboxEmp) -> list[dict[str, Any]]:
    """Run the gateway until every queued station-post is delivered; the bodies it sent."""
    before = len(emp.calls("station-post"))
    async with running(config) as gw:

        async def settled() -> bool:
            rows = await outbox_rows(gw, "station")
            return all(r["state"] == "delivered" for r in rows)

        await until(settled)
    return emp.calls("station-post")[before:]


async def test_stations_are_posted_once_and_again_only_when_changed(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    first = await delivered_station_posts(config, emp)
    assert sorted(b["station"]["id"] for b in first) == [
        "DE-BER-ALEX-01",
        "DE-HH-HAFEN-01",
        "DE-MUC-MAX-01",
    ]
    assert all(b["station"]["deleted"] is False for b in first)

    assert await delivered_station_posts(config, emp) == []  # unchanged: nothing

    edit_stations(config, 'name = "Alexanderplatz Parkhaus"', 'name = "Alexanderplatz P2"')
    (changed,) = await delivered_station_posts(config, emp)
    assert changed["station"]["name"] == "Alexanderplatz P2"
    assert emp.stations["DE-BER-ALEX-01"]["name"] == "Alexanderplatz P2"

    without_hamburg(config)
    (removed,) = await delivered_station_posts(config, emp)
    assert removed["station"]["id"] == "DE-HH-HAFEN-01"
    assert removed["station"]["deleted"] is True
    assert sorted(emp.stations) == ["DE-BER-ALEX-01", "DE-MUC-MAX-01"]

    assert await delivered_station_posts(config, emp) == []  # the deletion is not repeated


async def test_statuses_wait_until_their_station_is_posted(tmp_path: Path, emp: SandboxEmp) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    emp.fail_call("station-post", 500, n=6)  # each station fails twice first
    async with running(config) as gw:
        async with Harness(gw, emp).charger("CP-BER-001") as cp:
            await cp.connect()
            await cp.status(1, "Available")
            await cp.status(2, "Available")
            await emp.wait_for(
                lambda: (
                    emp.statuses.get("DE*CPO*E1001*1") == "Available"
                    and emp.statuses.get("DE*CPO*E1001*2") == "Available"
                ),
                timeout=10,
            )
        assert await gw.store.list_outbox("dead") == []
    posted_at = next(
        i
        for i, r in enumerate(emp.requests)
        if r.call == "station-post"
        and r.answered_status == 200
        and r.body["station"]["id"] == "DE-BER-ALEX-01"
    )
    statuses = [
        i
        for i, r in enumerate(emp.requests)
        if r.call == "connector-post-status" and r.body["connector-id"].startswith("DE*CPO*E1001")
    ]
    assert statuses and min(statuses) > posted_at
    # None was refused for an unknown EVSE (the sandbox answers 181 for those).
    assert all(emp.requests[i].answered_code == 0 for i in statuses)


async def test_check_config_refuses_a_connector_change_of_a_posted_station(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    await delivered_station_posts(config, emp)
    code, out, err = await cli(config, "check-config")
    # The example chargers are on security profile 0: warned about, not an error.
    assert code == 0 and all("security profile 0" in line for line in err.splitlines()), err
    edit_stations(config, 'evse_id = "DE*CPO*E3001*2"', 'evse_id = "DE*CPO*E3001*3"')
    code, out, err = await cli(config, "check-config")
    assert code == 78
    assert "DE-HH-HAFEN-01" in err and "connectors changed" in err
    assert "DE*CPO*E3001*2" in err and "DE*CPO*E3001*3" in err
    # Decided before anything is printed: no "ok:" above the error.
    assert "ok:" not in out and out == ""
