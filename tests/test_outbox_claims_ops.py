"""What operators see of outbox claims: `outbox list/show`, the /metrics counter of claims
taken over from expired ones, and the `[outbox] claim_s` check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpo_gateway.config import ConfigError, load_config
from cpo_gateway.store import Store, open_database
from cpo_gateway.store.outbox import insert_outbox_sync
from cpo_gateway.store.sql import Conn
from tests.conftest import Harness, write_config
from tests.test_metrics_exposition import _key, scrape, scrape_until
from tests.test_oioi_whitelist import cli
from tests.test_outbox_delivery import cdr_row
from tests.test_outbox_e2e import until

T0 = 1_800_000_000.0


async def test_outbox_list_and_show_name_the_claim(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    store = Store(open_database(load_config(config, {}).storage), node="gw-2")
    await store.db.open()
    try:
        await store.enqueue([cdr_row("s-1"), cdr_row("s-2")], T0)
        (claimed,) = await store.due("sandbox", T0, 1, lease_s=60.0)
    finally:
        await store.db.close()
    code, out, _ = await cli(config, "outbox", "list")
    assert code == 0
    lines = {line.split("\t")[4]: line.split("\t") for line in out.splitlines()[:-1]}
    assert lines["s-1"][6] == "claim=gw-2@2027-01-15T08:01:00+00:00"
    assert lines["s-2"][6] == "claim=-"
    code, out, _ = await cli(config, "outbox", "show", str(claimed.id))
    shown = json.loads(out)
    assert code == 0 and shown["claimed_by"] == "gw-2"
    assert shown["claimed_until"] == "2027-01-15T08:01:00+00:00"
    assert shown["claim_taken_from"] is None


async def test_metrics_count_claims_taken_over_from_expired_ones(harness: Harness) -> None:
    gw = harness.gateway
    assert (await scrape(harness))[_key("cpo_gateway_outbox_claims_expired_total")] == 0
    now = gw.clock()

    def claimed_by_a_dead_node(conn: Conn) -> None:
        insert_outbox_sync(conn, [cdr_row("s-orphan")], now)
        conn.execute(
            "UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE key = ?",
            ("gw-dead", now - 1.0, "s-orphan"),
        )

    await gw.store.db.run_write(claimed_by_a_dead_node)
    await harness.emp.wait_for(lambda: "s-orphan" in harness.emp.cdrs)
    samples = await scrape_until(
        harness, lambda s: s[_key("cpo_gateway_outbox_claims_expired_total")] == 1
    )
    assert samples[_key("cpo_gateway_outbox_claims_expired_total")] == 1

    async def marked() -> bool:
        return any(r.key == "s-orphan" for r in await gw.store.list_outbox("delivered"))

    await until(marked)  # the EMP has it a moment before its answer is committed
    (row,) = [r for r in await gw.store.list_outbox("delivered") if r.key == "s-orphan"]
    assert row.taken_from == "gw-dead" and row.claimed_by is None


def test_a_claim_shorter_than_twice_an_emp_timeout_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, outbox="claim_s = 50.0")
    with pytest.raises(ConfigError) as info:
        load_config(config, {})
    (problem,) = info.value.problems
    assert "outbox.claim_s" in problem and "60" in problem and "'sandbox'" in problem
    fine = write_config(tmp_path, outbox="claim_s = 61.0")
    assert load_config(fine, {}).outbox.claim_s == 61.0
