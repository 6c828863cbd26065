"""`cpo-gateway demo --once` plays the whole story and shows both protocols."""

from __future__ import annotations

import io

from cpo_gateway.sim.demo import play


async def test_demo_story_runs_to_the_end() -> None:
    out = io.StringIO()
    counts = await play(out, keep_running=False)
    text = out.getvalue()
    assert counts["stations"] == 3
    assert counts["cdrs"] == 2  # the remote session and the offline card session
    assert counts["verify"] == 1
    assert counts["statuses"] >= 5
    for needle in (
        "session-start",
        "RemoteStartTransaction",
        "SendLocalList",
        "session-post",
        "rfid-verify",
        "CP-MUC-DC1 was told: Invalid",
        "against its local list: accepted",
        "curl -sS -X POST",
    ):
        assert needle in text, needle
