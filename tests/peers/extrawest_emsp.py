"""An OCPI 2.2.1 eMSP the project did not write: extrawest-ocpi (`py_ocpi`, FastAPI) with an
in-memory store, served by uvicorn on 127.0.0.1 at a port the OS picks.

Run in its own virtual environment (tests/peers/.venv-ocpi, made by scripts/setup: the
package pins FastAPI 0.101, pydantic 1.10 and httpx 0.24, which the gateway does not use):

    python extrawest_emsp.py TOKEN_A [TOKENS_JSON]

It prints one JSON line, {"port": N, "versions_url": "..."}, then serves until killed; each
credentials change is printed as a JSON line too.

Its crud keeps in memory what the CPO sends (locations, sessions, CDRs, command results: each
write as it arrived, after py_ocpi's pydantic models validated it) and serves the tokens of
TOKENS_JSON (a JSON list of OCPI Token objects) from its tokens Sender, answering every
real-time authorization of one of them ALLOWED. Two routes outside
OCPI, for the test only: GET /peer/received (every write, in order) and GET /peer/cpo
(the CPO's credentials it holds, so a test can act for this eMSP: the package has no client).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
from typing import Any


def _say(**values: Any) -> None:
    print(json.dumps(values, default=str), flush=True)


def main() -> None:
    token_a = sys.argv[1]
    seeded: list[dict[str, Any]] = []
    if len(sys.argv) > 2:
        with open(sys.argv[2], encoding="utf-8") as file:
            seeded = json.load(file)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # py_ocpi reads its settings from the environment at import: set them first.
    os.environ.update(
        {
            "OCPI_HOST": f"127.0.0.1:{port}",
            "PROTOCOL": "http",
            "COUNTRY_CODE": "NL",
            "PARTY_ID": "XWE",
            "ENVIRONMENT": "production",
        }
    )
    import uvicorn
    from fastapi.encoders import jsonable_encoder
    from py_ocpi import get_application
    from py_ocpi.core.authentication.authenticator import Authenticator
    from py_ocpi.core.crud import Crud
    from py_ocpi.core.enums import ModuleID, RoleEnum
    from py_ocpi.modules.versions.enums import VersionNumber

    tokens_a = [token_a]
    tokens_c: dict[str, dict[str, Any]] = {}  # our token C -> what the CPO told us
    objects: dict[tuple[str, str], dict[str, Any]] = {}  # (module, id) -> the object now
    received: list[dict[str, Any]] = []  # every write of the CPO, in order
    tokens = {str(t["uid"]).lower(): t for t in seeded}  # py_ocpi lowers CiString uids

    def keep(op: str, module: ModuleID, id: Any, data: dict[str, Any], kw: dict[str, Any]) -> None:
        if module != ModuleID.commands:
            objects[(module.value, str(id))] = data
        write: dict[str, Any] = {"op": op, "module": module.value, "id": str(id), "data": data}
        write |= {k: kw[k] for k in ("country_code", "party_id") if k in kw}
        received.append(write)

    def ours(token: str) -> dict[str, Any]:
        return {
            "token": token,
            "url": f"http://127.0.0.1:{port}/ocpi/versions",
            "roles": [
                {
                    "role": "EMSP",
                    "party_id": "XWE",
                    "country_code": "NL",
                    "business_details": {"name": "extrawest eMSP"},
                }
            ],
        }

    class Auth(Authenticator):
        @classmethod
        async def get_valid_token_c(cls) -> list[str]:
            return list(tokens_c)

        @classmethod
        async def get_valid_token_a(cls) -> list[str]:
            return list(tokens_a)

    class Store(Crud):
        @classmethod
        async def get(cls, module: ModuleID, role: RoleEnum, id: Any, *a: Any, **kw: Any) -> Any:
            if module == ModuleID.credentials_and_registration:
                return ours(kw.get("auth_token") or id)
            if module == ModuleID.tokens:
                return tokens.get(str(id).lower())
            return objects.get((module.value, str(id)))

        @classmethod
        async def list(
            cls, module: ModuleID, role: RoleEnum, filters: dict, *a: Any, **kw: Any
        ) -> Any:
            if module != ModuleID.tokens:
                return [], 0, True
            every = list(tokens.values())
            start, limit = filters["offset"], filters["limit"]
            page = every[start : start + limit]
            return page, len(every), start + limit >= len(every)

        @classmethod
        async def create(
            cls, module: ModuleID, role: RoleEnum, data: dict, *a: Any, **kw: Any
        ) -> Any:
            if module == ModuleID.credentials_and_registration:
                token_c = secrets.token_urlsafe(24)
                tokens_c[token_c] = data
                if kw.get("auth_token") in tokens_a:
                    tokens_a.remove(kw["auth_token"])
                _say(event="registered", cpo=data["credentials"], endpoints=data["endpoints"])
                return ours(token_c)
            id = data.get("id") or kw.get("id")
            keep("create", module, id, data, kw)
            return data

        @classmethod
        async def update(
            cls, module: ModuleID, role: RoleEnum, data: dict, id: Any, *a: Any, **kw: Any
        ) -> Any:
            if module == ModuleID.credentials_and_registration:
                old = kw.get("auth_token")
                tokens_c.pop(str(old), None)
                token_c = secrets.token_urlsafe(24)
                tokens_c[token_c] = data
                _say(event="updated", cpo=data.get("credentials"))
                return ours(token_c)
            keep("update", module, id, data, kw)
            return data

        @classmethod
        async def delete(
            cls, module: ModuleID, role: RoleEnum, id: Any, *a: Any, **kw: Any
        ) -> None:
            if module == ModuleID.credentials_and_registration:
                tokens_c.pop(kw.get("auth_token") or id, None)
                _say(event="unregistered")

        @classmethod
        async def do(cls, module: ModuleID, role: RoleEnum, action: Any, *a: Any, **kw: Any) -> Any:
            if module != ModuleID.tokens:
                return None
            # real-time authorization: every token it knows is ALLOWED, and the ask is kept
            asked = kw.get("data") or {}
            uid = str(asked.get("token_uid", "")).lower()
            keep("authorize", module, uid, asked, kw)
            return {"allowed": "ALLOWED", "token": tokens[uid]} if uid in tokens else None

    app = get_application(
        version_numbers=[VersionNumber.v_2_2_1],
        roles=[RoleEnum.emsp],
        crud=Store,
        modules=[
            ModuleID.credentials_and_registration,
            ModuleID.locations,
            ModuleID.sessions,
            ModuleID.cdrs,
            ModuleID.tokens,
            ModuleID.commands,
        ],
        authenticator=Auth,
    )

    @app.get("/peer/received")
    async def what_was_received() -> Any:
        return jsonable_encoder(received)

    @app.get("/peer/cpo")
    async def the_cpo() -> Any:
        """The CPO's credentials this eMSP holds now (the token it calls the CPO with)."""
        return jsonable_encoder([told.get("credentials") for told in tokens_c.values()])

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    _say(port=port, versions_url=f"http://127.0.0.1:{port}/ocpi/versions")
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
