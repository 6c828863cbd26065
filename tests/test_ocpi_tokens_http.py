"""The OCPI Tokens receiver against a running gateway: PUT, PATCH and GET over HTTP, foreign
parties refused, and a pushed token reaching a 1.6 charger's Authorize answer and local list
as its whitelist type says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.ocpi_tokens_support import (
    OTHER_TOKEN,
    auth,
    gateway_with_tokens,
)

CP = "CP-BER-001"


def token(uid: str, whitelist: str = "ALLOWED", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "country_code": "DE",
        "party_id": "EMS",
        "uid": uid,
        "type": "RFID",
        "contract_id": "DE8EMSC00000001",
        "issuer": "Test eMSP",
        "valid": True,
        "whitelist": whitelist,
        "last_updated": "2026-01-01T00:00:00Z",
    }
    body.update(fields)
    return body


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    async with session.request(method, url, json=body, headers=headers or auth()) as resp:
        return resp.status, await resp.json()


async def test_put_get_patch_over_http(tmp_path: Path, emp: SandboxEmp) -> None:
    async with gateway_with_tokens(tmp_path, emp) as (_, url), aiohttp.ClientSession() as s:
        at = f"{url}/DE/EMS/AABBCCDD"
        status, body = await _call(s, "GET", at)
        assert (status, body["status_code"]) == (404, 2004)
        sent = token("AABBCCDD", visual_number="DE-EMS-1", language="de")
        status, body = await _call(s, "PUT", at, sent)
        assert (status, body["status_code"]) == (200, 1000), body
        status, body = await _call(s, "GET", at + "?type=RFID")
        assert (status, body["status_code"]) == (200, 1000)
        assert body["data"] == sent
        # uid is a CiString: the same token whatever its case, kept as first given.
        _, body = await _call(s, "GET", f"{url}/de/ems/aabbccdd")
        assert body["data"] == sent
        # The same uid as another type is another token.
        status, body = await _call(s, "GET", at + "?type=APP_USER")
        assert (status, body["status_code"]) == (404, 2004)
        patch = {"valid": False, "last_updated": "2026-02-01T00:00:00Z"}
        status, body = await _call(s, "PATCH", at, patch)
        assert (status, body["status_code"]) == (200, 1000), body
        _, body = await _call(s, "GET", at)
        assert body["data"] == {**sent, **patch}
        # A version older than the one kept (out of order) is taken and leaves it.
        status, body = await _call(s, "PUT", at, sent)
        assert (status, body["status_code"]) == (200, 1000)
        _, body = await _call(s, "GET", at)
        assert body["data"] == {**sent, **patch}
        status, body = await _call(s, "PATCH", at, {"valid": True})
        assert (status, body["status_code"]) == (200, 2001)
        assert body["status_message"].startswith("last_updated:")
        status, body = await _call(s, "PATCH", f"{url}/DE/EMS/00000001", patch)
        assert (status, body["status_code"]) == (404, 2004)
        # Bad fields are named; nothing is stored.
        status, body = await _call(s, "PUT", at, token("AABBCCDD", whitelist="MAYBE"))
        assert (status, body["status_code"]) == (200, 2001)
        assert body["status_message"].startswith("whitelist:")
        status, body = await _call(s, "PUT", at, token("11223344"))
        assert (status, body["status_code"]) == (200, 2001)
        assert body["status_message"].startswith("uid:")
        status, body = await _call(s, "PUT", at + "?type=BADGE", sent)
        assert (status, body["status_code"]) == (200, 2001)
        assert body["status_message"].startswith("type (query):")
        _, body = await _call(s, "GET", at)
        assert body["data"]["valid"] is False
        async with s.put(at, data=b"{not json", headers=auth()) as resp:
            assert resp.status == 400 and (await resp.json())["status_code"] == 2001
        status, body = await _call(s, "GET", at, headers=auth("no-such-token"))
        assert status == 401


async def test_a_partner_acts_only_on_its_own_party(tmp_path: Path, emp: SandboxEmp) -> None:
    async with gateway_with_tokens(tmp_path, emp) as (_, url), aiohttp.ClientSession() as s:
        mine = f"{url}/DE/EMS/AABBCCDD"
        assert (await _call(s, "PUT", mine, token("AABBCCDD")))[0] == 200
        other = auth(OTHER_TOKEN)
        for method, body in (("GET", None), ("PUT", token("AABBCCDD")), ("PATCH", {})):
            status, answer = await _call(s, method, mine, body, headers=other)
            assert status == 403, (method, answer)
            assert answer["status_message"].startswith("country_code/party_id:")
        # The body must name the token of the URL (and so the partner's own party).
        foreign = token("AABBCCDD", country_code="NL", party_id="OTH")
        status, answer = await _call(s, "PUT", mine, foreign)
        assert (status, answer["status_code"]) == (200, 2001)
        assert answer["status_message"].startswith("country_code:")
        # The other partner's own party is its own: the token there is another one.
        theirs = f"{url}/NL/OTH/AABBCCDD"
        status, answer = await _call(s, "GET", theirs, headers=other)
        assert (status, answer["status_code"]) == (404, 2004)
        _, answer = await _call(s, "GET", mine)
        assert answer["data"]["country_code"] == "DE" and answer["data"]["valid"] is True


async def test_a_pushed_token_reaches_the_chargers_authorize(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    async with (
        gateway_with_tokens(tmp_path, emp) as (h, url),
        aiohttp.ClientSession() as s,
        h.charger(CP) as cp,
    ):
        await cp.connect()
        await cp.boot()
        assert await cp.authorize("0A0B0C0D") == "Invalid"  # nobody knows it yet
        cards = {
            "0A0B0C0D": "ALLOWED",
            "0A0B0C0E": "ALWAYS",
            "0A0B0C0F": "ALLOWED_OFFLINE",
            "0A0B0C10": "NEVER",
            "0A0B0C11": "ALLOWED_OFFLINE",
        }
        for uid, whitelist in cards.items():
            status, body = await _call(s, "PUT", f"{url}/DE/EMS/{uid}", token(uid, whitelist))
            assert (status, body["status_code"]) == (200, 1000), body
        assert await cp.authorize("0a0b0c0d") == "Accepted"
        assert await cp.authorize("0A0B0C0E") == "Accepted"
        # The eMSP cannot be reached: ALLOWED_OFFLINE is accepted locally, NEVER is not.
        assert await cp.authorize("0A0B0C0F") == "Accepted"
        assert await cp.authorize("0A0B0C10") == "Invalid"
        status, _ = await _call(
            s,
            "PATCH",
            f"{url}/DE/EMS/0A0B0C0D",
            {"valid": False, "last_updated": "2026-03-01T00:00:00Z"},
        )
        assert status == 200
        assert await cp.authorize("0A0B0C0D") == "Blocked"
        # An invalid ALLOWED_OFFLINE token is still asked for; unreachable, it is refused.
        status, _ = await _call(
            s,
            "PATCH",
            f"{url}/DE/EMS/0A0B0C11",
            {"valid": False, "last_updated": "2026-03-01T00:00:00Z"},
        )
        assert status == 200
        assert await cp.authorize("0A0B0C11") == "Blocked"
        # The chargers' lists hold what the whitelist types allow, valid tokens only.
        await h.gateway.core.push_local_lists()
        assert cp.authorize_locally("0A0B0C0E")
        assert cp.authorize_locally("0A0B0C0F")
        assert not cp.authorize_locally("0A0B0C10")
        assert not cp.authorize_locally("0A0B0C0D")
        assert not cp.authorize_locally("0A0B0C11")
