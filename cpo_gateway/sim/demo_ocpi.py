"""The OCPI half of `cpo-gateway demo`: the sandbox eMSP as a second partner of the gateway.

The gateway registers with the eMSP at start (the eMSP's versions URL and token A are in the
demo's configuration); the eMSP then reads the gateway's Locations, pushes one of its tokens
and starts and stops a session with commands, while its receivers collect what the gateway
owes it (Locations, EVSE statuses, the CommandResults, the Session PUT/PATCH and the CDR).
Every step is the eMSP's real request or the gateway's real delivery; nothing is printed that
did not happen.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
from collections.abc import Callable
from typing import Any

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.sim.ocpi_emsp.sandbox import SandboxEmsp
from cpo_gateway.sim.timeline import Timeline

EMSP = "emsp"  # the OCPI partner's name in the gateway's configuration
EMSP_CARD = "0A1B2C3D"  # the eMSP's RFID card, pushed to the gateway and used to start
CONFIG = """
[ocpi]
host = "127.0.0.1"
port = 0
country_code = "DE"
party_id = "CPO"
business_name = "Demo CPO"

[[emp]]
name = "{name}"
protocol = "ocpi"
versions_url = "{versions_url}"
token_a = "{token_a}"
"""


def config(emsp: SandboxEmsp) -> str:
    """The `[ocpi]` table and the eMSP's `[[emp]]` entry, to append to the demo's config."""
    assert emsp.token_a is not None
    return CONFIG.format(name=EMSP, versions_url=emsp.versions_url, token_a=emsp.token_a)


def token() -> dict[str, Any]:
    """The eMSP's token as OCPI 2.2.1 describes it (module Tokens, object Token)."""
    return {
        "country_code": "NL",
        "party_id": "EMS",
        "uid": EMSP_CARD,
        "type": "RFID",
        "contract_id": "NL-EMS-C12345678-9",
        "issuer": "Sandbox eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2026-01-01T00:00:00Z",
    }


async def _until(check: Callable[[], object], what: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the demo waited {seconds:.0f} s for {what}")


class DemoEmsp:
    """The demo's OCPI eMSP: what it asks of the gateway, each request shown on the timeline."""

    def __init__(self, emsp: SandboxEmsp, gateway: Gateway, tl: Timeline) -> None:
        self.emsp, self._gateway, self._tl = emsp, gateway, tl
        self.seen: dict[str, Any] = {}  # what the eMSP was told, step by step (for the tests)

    async def registered(self) -> LinkState:
        """Wait until both sides hold each other's credentials; the gateway's link state."""
        await _until(lambda: self.emsp.registration is not None, "the OCPI registration")
        state = LinkState.UNREGISTERED
        for _ in range(200):
            link = await self._gateway.store.link(EMSP)
            state = link.state if link is not None else LinkState.UNREGISTERED
            if state is LinkState.REGISTERED:
                break
            await asyncio.sleep(0.05)
        reg = self.emsp.registration
        assert reg is not None
        self._tl.note(
            f"the gateway registered with the eMSP (its token A): link {state.value}, "
            f"{len(reg.endpoints)} endpoints exchanged"
        )
        self.seen["link"] = state.value
        return state

    async def _send(self, method: str, module: str, path: str, shown: str, body: Any = None) -> Any:
        reg = self.emsp.registration
        assert reg is not None
        sent_at = self._tl.now()
        answer = await self.emsp.send(method, reg.endpoints[module] + path, reg.token_theirs, body)
        self._tl.emsp_call(shown, answer, sent_at)
        return answer

    async def read_locations(self) -> int:
        """GET the gateway's Locations (one page): how many there are."""
        answer = await self._send("GET", "locations", "", "GET locations")
        self.seen["locations_read"] = len(answer.get("data") or [])
        return int(self.seen["locations_read"])

    async def push_token(self) -> int:
        """PUT the eMSP's token into the gateway's tokens receiver: the OCPI status code."""
        path = f"/NL/EMS/{EMSP_CARD}"
        answer = await self._send("PUT", "tokens", path, f"PUT token {EMSP_CARD}", token())
        self.seen["token_status"] = int(answer.get("status_code", 0))
        return int(self.seen["token_status"])

    async def start(self, location_id: str, evse_uid: str, ref: str) -> str:
        """START_SESSION; the CommandResponse's result (the CommandResult comes later)."""
        body = {"token": token(), "location_id": location_id, "evse_uid": evse_uid}
        return await self._command("START_SESSION", body, ref, f"START_SESSION {evse_uid}")

    async def stop(self, session_id: str, ref: str) -> str:
        body = {"session_id": session_id}
        return await self._command("STOP_SESSION", body, ref, f"STOP_SESSION {session_id[:8]}")

    async def _command(self, command: str, body: dict[str, Any], ref: str, shown: str) -> str:
        sent_at = self._tl.now()
        answer = await self.emsp.command(command, body, ref=ref)
        self._tl.emsp_call(f"POST commands {shown}", answer, sent_at)
        data = answer.get("data")
        result = data.get("result") if isinstance(data, dict) else answer.get("status_code")
        self.seen[f"{command} response"] = str(result)
        return str(result)

    async def result(self, ref: str) -> str:
        """The CommandResult the gateway posted to the command's response_url."""
        await _until(lambda: self.emsp.results(ref), f"the CommandResult of {ref}")
        self.seen[f"{ref} result"] = str(self.emsp.results(ref)[0].get("result"))
        return str(self.seen[f"{ref} result"])

    async def session_id(self, evse_uid: str) -> str:
        """The id of the session the gateway PUT for `evse_uid`."""

        def found() -> str | None:
            for got in self.emsp.received:
                body = got.body if isinstance(got.body, dict) else {}
                put = got.module == "sessions" and got.method == "PUT"
                if put and body.get("id") and body.get("evse_uid") == evse_uid:
                    return str(body["id"])
            return None

        await _until(found, f"the Session PUT for {evse_uid}")
        return found() or ""

    async def patched(self, session_id: str) -> None:
        """Wait for a Session PATCH of `session_id` (the charging update the gateway owes)."""

        def found() -> bool:
            return any(
                r.module == "sessions" and r.method == "PATCH" and r.path.endswith(session_id)
                for r in self.emsp.received
            )

        await _until(found, f"a Session PATCH of {session_id[:8]}")

    async def cdr(self, session_id: str) -> dict[str, Any]:
        await _until(lambda: session_id in self.emsp.cdrs, f"the CDR of {session_id[:8]}")
        cdr: dict[str, Any] = self.emsp.cdrs[session_id]
        return cdr

    def count(self, module: str, method: str) -> int:
        return sum(1 for r in self.emsp.received if r.module == module and r.method == method)

    def help_text(self) -> str:
        """What the user can send as the eMSP once the story has played."""
        return (
            f"\nOCPI, as the eMSP: the gateway's versions\n  {self.curl_versions()}\n"
            "START_SESSION on DE*CPO*E3001*2 (its CommandResult shows above when it arrives):\n"
            f"  {self.curl_start('DE-HH-HAFEN-01', 'DE*CPO*E3001*2')}\n"
        )

    def curl_versions(self) -> str:
        """A curl for the gateway's OCPI versions, with the token the eMSP calls it with."""
        reg = self.emsp.registration
        if reg is None:
            return ""
        return f"curl -H 'Authorization: Token {self._auth()}' {reg.versions_url}"

    def curl_start(self, location_id: str, evse_uid: str) -> str:
        """A curl for START_SESSION as the eMSP: the CommandResult goes to the eMSP's
        receiver (and shows on the timeline)."""
        reg = self.emsp.registration
        if reg is None:
            return ""
        body = {
            "response_url": f"{self.emsp.base}/2.2.1/commands/START_SESSION/yours",
            "token": token(),
            "location_id": location_id,
            "evse_uid": evse_uid,
        }
        return (
            f"curl -s -X POST -H 'Authorization: Token {self._auth()}' "
            f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))} "
            f"{reg.endpoints['commands']}/START_SESSION"
        )

    def _auth(self) -> str:
        reg = self.emsp.registration
        assert reg is not None
        return base64.b64encode(reg.token_theirs.encode()).decode()
