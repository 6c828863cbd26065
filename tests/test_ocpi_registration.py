"""The OCPI credentials handshake both ways, end to end: the gateway's OCPI listener and
registrar over a real SQLite file, the sandbox eMSP on its own port (both on 127.0.0.1:0)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from cpo_gateway.bridge.links import LinkState
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.registration import (
    Identity,
    PartnerSettings,
    Registrar,
    RegistrationFailed,
)
from cpo_gateway.ocpi.server import OcpiServer, caller
from cpo_gateway.ocpi.transport import Party, ocpi_json_response
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from cpo_gateway.store import Store
from tests.storage import make_database

OURS = Party("DE", "CPO")


class EchoLocations:
    """A functional module for the tests: answers who called."""

    identifier = "locations"
    role = "SENDER"

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix, self._list)
        router.add_put(prefix + "/{country_code}/{party_id}/{uid}", self._put)

    async def _list(self, request: web.Request) -> web.Response:
        return ocpi_json_response({"partner": caller(request).partner})

    async def _put(self, request: web.Request) -> web.Response:
        m = request.match_info
        party = caller(request).require_own(m["country_code"], m["party_id"])
        return ocpi_json_response({"owner": str(party)})


@dataclass
class Rig:
    store: Store
    registrar: Registrar
    server: OcpiServer
    emsp: SandboxEmsp

    @property
    def versions(self) -> str:
        return self.server.base_url + "/versions"

    def url(self, rest: str) -> str:
        return f"{self.server.base_url}/2.2.1/{rest}"


async def _rig(tmp_path: Path, *, with_token_a: bool) -> AsyncIterator[Rig]:
    db = make_database(tmp_path / "gateway.db")
    await db.open()
    store = Store(db)
    emsp = SandboxEmsp()
    await emsp.start()
    client = OcpiClient(OURS)
    holder: list[OcpiServer] = []
    identity = Identity(OURS, "Test CPO", lambda: holder[0].base_url)
    settings = PartnerSettings(
        "emsp",
        versions_url=emsp.versions_url if with_token_a else None,
        token_a=emsp.token_a if with_token_a else None,
        request_timeout_s=5.0,
    )
    registrar = Registrar(store, client, identity, [settings])
    server = OcpiServer(
        registrar, host="127.0.0.1", port=0, base_url="", ours=OURS, modules=[EchoLocations()]
    )
    holder.append(server)
    await server.start()
    try:
        yield Rig(store, registrar, server, emsp)
    finally:
        await server.close()
        await client.close()
        await emsp.stop()
        await db.close()


@pytest.fixture
async def outbound(tmp_path: Path) -> AsyncIterator[Rig]:
    async for rig in _rig(tmp_path, with_token_a=True):
        yield rig


@pytest.fixture
async def inbound(tmp_path: Path) -> AsyncIterator[Rig]:
    async for rig in _rig(tmp_path, with_token_a=False):
        yield rig


# --- we register with the eMSP ------------------------------------------------------------
async def test_we_register_with_the_emsp(outbound: Rig) -> None:
    token_a = outbound.emsp.token_a
    link = await outbound.registrar.register("emsp")
    reg = outbound.emsp.registration
    assert reg is not None and link.state is LinkState.REGISTERED
    # we call it with the token it generated (C), it calls us with ours (B)
    assert link.token_out == reg.token_ours and link.token_in == reg.token_theirs
    assert outbound.emsp.token_a is None and token_a != link.token_out
    stored = await outbound.store.link("emsp")
    assert stored is not None and stored.state is LinkState.REGISTERED
    endpoints = dict(stored.details["endpoints"])
    assert endpoints["cdrs/RECEIVER"] == f"{outbound.emsp.base}/2.2.1/cdrs"
    assert stored.details["roles"][0]["party_id"] == "EMS"
    # the eMSP read our endpoints with token B during its POST
    assert reg.endpoints["locations"] == outbound.url("locations")
    answer = await outbound.emsp.send("GET", outbound.url("locations"), reg.token_theirs)
    assert answer["status_code"] == 1000 and answer["data"] == {"partner": "emsp"}


async def test_registration_retries_until_the_emsp_answers(outbound: Rig) -> None:
    outbound.emsp.fail_credentials = 2
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        failed = await outbound.store.link("emsp")
        assert failed is not None and failed.last_error and "503" in failed.last_error

    link = await outbound.registrar.register_until_done(
        "emsp", first_delay_s=1.0, max_delay_s=3.0, sleep=sleep
    )
    assert link.state is LinkState.REGISTERED and len(slept) == 2
    assert 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 2.0  # back-off doubles, with jitter
    stored = await outbound.store.link("emsp")
    assert stored is not None and stored.last_error is None


async def test_a_wrong_token_a_fails_and_says_why(outbound: Rig) -> None:
    outbound.emsp.token_a = "not-the-token-we-were-given"
    with pytest.raises(RegistrationFailed) as caught:
        await outbound.registrar.register("emsp")
    assert "401" in caught.value.detail
    stored = await outbound.store.link("emsp")
    assert stored is not None and stored.state is LinkState.UNREGISTERED


# --- the eMSP registers with us -------------------------------------------------------------
async def test_the_emsp_registers_with_our_token_a(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    invited = await inbound.store.link("emsp")
    assert invited is not None and invited.state is LinkState.INVITED
    assert invited.token_a_digest and token_a not in repr(invited)  # only the digest is kept
    reg = await inbound.emsp.register_with(inbound.versions, token_a)
    link = await inbound.store.link("emsp")
    assert link is not None and link.state is LinkState.REGISTERED
    assert link.token_out == reg.token_ours and link.token_in == reg.token_theirs
    assert link.token_a_digest is None
    # token A is void now; token C works, on a functional module too
    again = await inbound.emsp.send("GET", inbound.versions, token_a)
    assert again["_http_status"] == 401 and again["status_code"] == 2000
    mine = await inbound.emsp.send("GET", inbound.url("credentials"), reg.token_theirs)
    assert mine["status_code"] == 1000 and mine["data"]["token"] == reg.token_theirs
    assert mine["data"]["roles"][0] == {
        "role": "CPO",
        "party_id": "CPO",
        "country_code": "DE",
        "business_details": {"name": "Test CPO"},
    }
    listed = await inbound.emsp.send("GET", inbound.url("locations"), reg.token_theirs)
    assert listed["data"] == {"partner": "emsp"}


async def test_token_a_reaches_only_versions_and_credentials(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    ok = await inbound.emsp.send("GET", inbound.versions, token_a)
    assert ok["status_code"] == 1000 and ok["data"][0]["version"] == "2.2.1"
    details = await inbound.emsp.send("GET", inbound.url("").rstrip("/"), token_a)
    ids = {(e["identifier"], e["role"]) for e in details["data"]["endpoints"]}
    assert ids == {("credentials", "SENDER"), ("locations", "SENDER")}
    refused = await inbound.emsp.send("GET", inbound.url("locations"), token_a)
    assert refused["_http_status"] == 401 and "registration" in refused["status_message"]


async def test_a_post_whose_versions_cannot_be_used_is_3001(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    creds = inbound.emsp.credentials("their-token-b")
    creds["url"] = "http://127.0.0.1:9/ocpi/versions"  # nothing listens there
    answer = await inbound.emsp.send("POST", inbound.url("credentials"), token_a, creds)
    assert answer["_http_status"] == 200 and answer["status_code"] == 3001
    assert answer["status_message"].startswith("url:")
    link = await inbound.store.link("emsp")
    assert link is not None and link.state is LinkState.INVITED  # token A still usable


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.pop("token"), "token"),
        (lambda c: c.update(url="ftp://x"), "url"),
        (lambda c: c["roles"][0].update(party_id="TOOLONG"), "roles[0].party_id"),
        (lambda c: c["roles"][0].update(role="KING"), "roles[0].role"),
        (lambda c: c.update(roles=[]), "roles"),
    ],
)
async def test_bad_credentials_name_the_field(inbound: Rig, mutate: object, field: str) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    creds = inbound.emsp.credentials("their-token-b")
    mutate(creds)  # type: ignore[operator]
    answer = await inbound.emsp.send("POST", inbound.url("credentials"), token_a, creds)
    assert answer["status_code"] == 2001 and answer["status_message"].startswith(field)


async def test_update_replaces_the_tokens(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    reg = await inbound.emsp.register_with(inbound.versions, token_a)
    old_c = reg.token_theirs
    await inbound.emsp.update_credentials()
    assert reg.token_theirs != old_c
    link = await inbound.store.link("emsp")
    assert link is not None and link.token_out == reg.token_ours
    stale = await inbound.emsp.send("GET", inbound.url("locations"), old_c)
    assert stale["_http_status"] == 401
    fresh = await inbound.emsp.send("GET", inbound.url("locations"), reg.token_theirs)
    assert fresh["status_code"] == 1000
    # POST again while registered is not the way to update
    again = await inbound.emsp.send(
        "POST", inbound.url("credentials"), reg.token_theirs, inbound.emsp.credentials("x")
    )
    assert again["_http_status"] == 405 and again["status_message"].startswith("method")


async def test_delete_unregisters(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    reg = await inbound.emsp.register_with(inbound.versions, token_a)
    token_c = reg.token_theirs
    answer = await inbound.emsp.unregister()
    assert answer["status_code"] == 1000
    link = await inbound.store.link("emsp")
    assert link is not None and link.state is LinkState.UNREGISTERED and link.token_in is None
    gone = await inbound.emsp.send("GET", inbound.versions, token_c)
    assert gone["_http_status"] == 401


# --- who may act as whom ---------------------------------------------------------------------
async def test_unknown_token_is_401_with_the_envelope(inbound: Rig) -> None:
    for token in ("nobody", ""):
        answer = await inbound.emsp.send("GET", inbound.versions, token)
        assert answer["_http_status"] == 401 and answer["status_code"] == 2000
        assert "Authorization" in answer["status_message"] and "data" not in answer


async def test_a_partner_acts_only_as_its_own_party(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    reg = await inbound.emsp.register_with(inbound.versions, token_a)
    url, token = inbound.url("locations"), reg.token_theirs
    own = {"OCPI-from-country-code": "NL", "OCPI-from-party-id": "EMS"}
    ok = await inbound.emsp.send("GET", url, token, headers=own)
    assert ok["status_code"] == 1000
    assert ok["_headers"]["OCPI-to-party-id"] == "EMS"
    assert ok["_headers"]["OCPI-from-party-id"] == "CPO"
    foreign = {"OCPI-from-country-code": "NL", "OCPI-from-party-id": "XYZ"}
    refused = await inbound.emsp.send("GET", url, token, headers=foreign)
    assert refused["_http_status"] == 403 and "NL*XYZ" in refused["status_message"]
    elsewhere = {**own, "OCPI-to-country-code": "FR", "OCPI-to-party-id": "ABC"}
    refused = await inbound.emsp.send("GET", url, token, headers=elsewhere)
    assert refused["_http_status"] == 403 and "FR*ABC" in refused["status_message"]
    # objects under another party's URL are not there for it
    mine = await inbound.emsp.send("PUT", url + "/nl/ems/u1", token, {})
    assert mine["status_code"] == 1000 and mine["data"] == {"owner": "NL*EMS"}
    theirs = await inbound.emsp.send("PUT", url + "/NL/XYZ/u1", token, {})
    assert theirs["_http_status"] == 404 and theirs["status_message"].startswith("path")
    broken = await inbound.emsp.send("PUT", url + "/NLD/XYZ/u1", token, {})
    assert broken["status_code"] == 2001 and "path.country_code" in broken["status_message"]


async def test_request_ids_are_echoed(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    ids = {"X-Request-ID": "req-42", "X-Correlation-ID": "corr-7"}
    answer = await inbound.emsp.send("GET", inbound.versions, token_a, headers=ids)
    assert answer["_headers"]["X-Request-ID"] == "req-42"
    assert answer["_headers"]["X-Correlation-ID"] == "corr-7"
    refused = await inbound.emsp.send("GET", inbound.versions, "wrong", headers=ids)
    assert refused["_headers"]["X-Request-ID"] == "req-42" and refused["_http_status"] == 401
    counted = inbound.server.counts
    assert counted.get("versions", 1000) == 1 and counted.get("versions", 2000) == 1


async def test_token_a_is_refused_for_a_registered_partner(inbound: Rig) -> None:
    await inbound.emsp.register_with(
        inbound.versions, await inbound.registrar.issue_token_a("emsp")
    )
    with pytest.raises(RegistrationFailed, match="already registered"):
        await inbound.registrar.issue_token_a("emsp")


async def test_a_guesser_is_limited_but_the_partner_is_served(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    reg = await inbound.emsp.register_with(inbound.versions, token_a)
    statuses = [
        (await inbound.emsp.send("GET", inbound.versions, f"guess-{i}"))["_http_status"]
        for i in range(25)
    ]
    assert statuses[:20] == [401] * 20 and set(statuses[21:]) == {429}
    # the same address with the right token: served (only failing requests are limited)
    ok = await inbound.emsp.send("GET", inbound.versions, reg.token_theirs)
    assert ok["status_code"] == 1000


async def test_a_new_token_a_voids_the_last_one(inbound: Rig) -> None:
    first = await inbound.registrar.issue_token_a("emsp")
    second = await inbound.registrar.issue_token_a("emsp")
    old = await inbound.emsp.send("GET", inbound.versions, first)
    new = await inbound.emsp.send("GET", inbound.versions, second)
    assert old["_http_status"] == 401 and new["status_code"] == 1000


async def test_a_malformed_token_is_not_echoed(inbound: Rig) -> None:
    token_a = await inbound.registrar.issue_token_a("emsp")
    secret = "s3cret-" + "x" * 70
    creds = inbound.emsp.credentials(secret)
    answer = await inbound.emsp.send("POST", inbound.url("credentials"), token_a, creds)
    assert answer["status_code"] == 2001 and answer["status_message"].startswith("token:")
    assert "s3cret" not in answer["status_message"] and "77 characters" in answer["status_message"]
