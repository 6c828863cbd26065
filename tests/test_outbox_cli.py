"""`cpo-gateway outbox show|list --delivered|retry --all-pending` against a running gateway's
database: what was sent to an EMP, and sending what waits now."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import write_config
from tests.test_oioi_whitelist import cli
from tests.test_outbox_e2e import outbox_rows, running, until


async def test_outbox_show_list_delivered_and_retry_all_pending(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    config = write_config(tmp_path, emp_url=emp.url)
    emp.fail_next(3, 503, retry_after="3600")
    async with running(config) as gw:

        async def waiting() -> bool:
            rows = await outbox_rows(gw, "station")
            return len(rows) == 3 and all(r["attempts"] == 1 for r in rows)

        await until(waiting)
        first = (await outbox_rows(gw, "station"))[0]
        code, out, _ = await cli(config, "outbox", "show", str(first["id"]))
        assert code == 0
        shown = json.loads(out)
        assert (shown["kind"], shown["state"], shown["attempts"]) == ("station", "pending", 1)
        assert shown["last_answer"].startswith("HTTP 503")
        assert shown["payload"]["station"]["id"] == first["key"]
        assert shown["next_attempt_at"] > shown["created_at"] and shown["done_at"] is None

        code, out, _ = await cli(config, "outbox", "retry", "--all-pending")
        # The three station-posts waiting an hour, and any status waiting for its station.
        found = re.fullmatch(r"(\d+) pending row\(s\) due now\n", out)
        assert code == 0 and found is not None and int(found.group(1)) >= 3, out
        await emp.wait_for(lambda: len(emp.stations) == 3)

        async def delivered() -> bool:
            rows = await outbox_rows(gw, "station")
            return all(r["state"] == "delivered" for r in rows)

        await until(delivered)
        code, out, _ = await cli(config, "outbox", "list", "--delivered")
        assert code == 0 and out.count("\tdelivered\tsandbox\tstation\t") == 3
        code, out, _ = await cli(config, "outbox", "show", str(first["id"]))
        assert json.loads(out)["done_at"] is not None
    code, _, err = await cli(config, "outbox", "show", "999999")
    assert code == 1 and "no such row" in err
    code, _, err = await cli(config, "outbox", "retry", "--all-dead", "--all-pending")
    assert code == 64
