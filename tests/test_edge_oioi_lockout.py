"""A failure limit must not let a stranger lock out the rightful peer (OIOI side).

Wrong API keys from an address are answered 429 once they pass the limit, but a request with
the right key from the same address (a shared proxy, a carrier NAT) is still served: the key
check is a cheap digest compare, so only failing requests are limited.
"""

from __future__ import annotations

import aiohttp
import orjson

from cpo_gateway.sim.emp.sandbox import EmpClient
from tests.conftest import PARTNER, Harness

WHITELIST = ["0A0B0C0D", "11223344"]


async def _guess(url: str, key: str) -> tuple[int, str | None, int]:
    """One rfid-post with `key` from 127.0.0.1: HTTP status, Retry-After, result code."""
    body = orjson.dumps({"rfid-post": {"rfids": WHITELIST, "partner-identifier": PARTNER}})
    headers = {"Authorization": f"key={key}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(url, data=body, headers=headers) as resp,
    ):
        doc = orjson.loads(await resp.read())
        return resp.status, resp.headers.get("Retry-After"), int(doc["result"]["code"])


async def test_right_key_is_served_while_the_guesser_on_its_address_is_limited(
    harness: Harness,
) -> None:
    url = harness.oioi_url
    guesses = [await _guess(url, f"stranger-guess-{i:04d}") for i in range(30)]
    assert guesses[0] == (401, None, 210)
    assert guesses[-1] == (429, "60", 210), guesses
    # The rightful EMP shares the stranger's address (127.0.0.1) and gets its normal answer.
    async with harness.client() as client:
        status, body = await client.rfid_post(PARTNER, WHITELIST)
    assert (status, body["result"]["code"]) == (200, 0), body
    assert body["rfid"]["processed"] == len(WHITELIST)
    assert await harness.store.whitelist_counts() == {"sandbox": len(WHITELIST)}
    # Its success did not lift the guesser's limit.
    assert await _guess(url, "stranger-guess-9999") == (429, "60", 210)


async def test_right_key_is_served_even_after_many_limited_guesses(harness: Harness) -> None:
    async with EmpClient(harness.oioi_url, "stranger-guess-0000") as bad, harness.client() as good:
        for _ in range(40):
            await bad.session_stop("DE*CPO*E1001*1", "DE-8PS-C12345-6")
        status, body = await good.session_stop("DE*CPO*E1001*1", "DE-8PS-C12345-6")
        bad_status, _ = await bad.session_stop("DE*CPO*E1001*1", "DE-8PS-C12345-6")
    # No session runs on that EVSE: the EMP gets the business answer, not the guesser's 429.
    assert (status, body["result"]["code"]) == (200, 182), body
    assert bad_status == 429
