"""An OCPI 2.2.1 eMSP the project did not write: extrawest-ocpi (`py_ocpi`, FastAPI) with an
in-memory store, served by uvicorn on 127.0.0.1 at a port the OS picks.

Run in its own virtual environment (tests/peers/.venv-ocpi, made by scripts/setup: the
package pins FastAPI 0.101, pydantic 1.10 and httpx 0.24, which the gateway does not use):

    python extrawest_emsp.py TOKEN_A

It prints one JSON line, {"port": N, "versions_url": "..."}, then serves until killed; each
credentials change and each object the CPO pushes is printed as a JSON line too.
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
    from py_ocpi import get_application
    from py_ocpi.core.authentication.authenticator import Authenticator
    from py_ocpi.core.crud import Crud
    from py_ocpi.core.enums import ModuleID, RoleEnum
    from py_ocpi.modules.versions.enums import VersionNumber

    tokens_a = [token_a]
    tokens_c: dict[str, dict[str, Any]] = {}  # our token C -> what the CPO told us

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
            return None

        @classmethod
        async def list(
            cls, module: ModuleID, role: RoleEnum, filters: dict, *a: Any, **kw: Any
        ) -> Any:
            return [], 0, True

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
            _say(event="created", module=module.value, data=data)
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
            _say(event="updated", module=module.value, data=data)
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
            return None

    app = get_application(
        version_numbers=[VersionNumber.v_2_2_1],
        roles=[RoleEnum.emsp],
        crud=Store,
        modules=[
            ModuleID.credentials_and_registration,
            ModuleID.locations,
            ModuleID.sessions,
            ModuleID.cdrs,
        ],
        authenticator=Auth,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    _say(port=port, versions_url=f"http://127.0.0.1:{port}/ocpi/versions")
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
