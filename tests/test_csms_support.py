"""Helpers shared by the tests/test_csms_*.py files (this module holds no tests).

A gateway started in this event loop with a tailored config, and a raw OCPP-J charger that
sends exactly the frames a test writes and answers the central system's Calls from a script.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import ssl
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from cpo_gateway.app import Gateway
from cpo_gateway.config import Config, load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import EXAMPLE_STATIONS, Harness, running_gateway, write_config

OCPP16 = Subprotocol("ocpp1.6")
TS = "2024-05-01T10:15:00Z"
CP = "CP-BER-001"
# An answer payload, a list [errorCode, description] for a CallError, or None: no answer.
Responder = Callable[[str, dict[str, Any]], dict[str, Any] | list[str] | None]


def stations_with(tmp_path: Path, extra: str) -> Path:
    """The example stations file with `extra` TOML ([[charger]] tables) appended."""
    path = tmp_path / "stations-src.toml"
    path.write_text(EXAMPLE_STATIONS.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    return path


def config(
    tmp_path: Path,
    emp: SandboxEmp | None = None,
    *,
    change: Callable[[Config], Config] | None = None,
    **kwargs: Any,
) -> Config:
    url = emp.url if emp is not None else "http://127.0.0.1:9/api/v4/request"
    cfg = load_config(write_config(tmp_path, emp_url=url, **kwargs), {})
    return change(cfg) if change is not None else cfg


def with_ocpp(**fields: Any) -> Callable[[Config], Config]:
    """A config change for values the TOML checks refuse (a heartbeat of 1 s)."""

    def change(cfg: Config) -> Config:
        return dataclasses.replace(cfg, ocpp=dataclasses.replace(cfg.ocpp, **fields))

    return change


def running(cfg: Config, emp: SandboxEmp) -> contextlib.AbstractAsyncContextManager[Harness]:
    return running_gateway(Gateway(cfg), emp)


@contextlib.contextmanager
def tls11_client(cafile: Path) -> Iterator[ssl.SSLContext]:
    """A client context limited to TLS 1.0-1.1, which the gateway must refuse; use it inside
    the block, where those deprecated versions do not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, on purpose
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(cafile=str(cafile))
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        yield old


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def accept_all(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """Answers a charger that accepts everything would give."""
    if action == "GetConfiguration":
        return {"configurationKey": [], "unknownKey": payload.get("key", [])}
    if action == "GetLocalListVersion":
        return {"listVersion": 0}
    if action == "UnlockConnector":
        return {"status": "Unlocked"}
    return {"status": "Accepted"}


class RawCharger:
    """A websocket peer speaking raw OCPP-J frames.

    Calls from the central system are recorded in `calls` and answered by `responder`
    (None: no answer at all). Replies to our own frames are kept by unique id.
    """

    def __init__(self, ws: ClientConnection, responder: Responder | None = accept_all) -> None:
        self.ws = ws
        self.responder = responder
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.call_ids: list[str] = []
        self._replies: dict[str, list[Any]] = {}
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        url: str,
        cp_id: str = CP,
        responder: Responder | None = accept_all,
        *,
        greet: bool = True,
        **kw: Any,
    ) -> AsyncIterator[RawCharger]:
        """greet: say something first (a Heartbeat, as a charger back without rebooting):
        the gateway sends nothing to a charger before its first message."""
        async with connect(f"{url}/{cp_id}", subprotocols=[OCPP16], **kw) as ws:
            raw = cls(ws, responder)
            try:
                if greet:
                    await raw.call("Heartbeat", {})
                yield raw
            finally:
                raw._reader.cancel()
                await asyncio.gather(raw._reader, return_exceptions=True)

    async def _read(self) -> None:
        async for message in self.ws:
            frame = orjson.loads(message)
            if frame[0] == 2:
                self.calls.append((frame[2], frame[3]))
                self.call_ids.append(frame[1])
                answer = self.responder(frame[2], frame[3]) if self.responder else None
                if isinstance(answer, list):
                    await self.ws.send(orjson.dumps([4, frame[1], *answer, {}]).decode())
                elif answer is not None:
                    await self.answer(frame[1], answer)
            else:
                self._replies[frame[1]] = frame
            self._arrived.set()

    async def answer(self, unique_id: str, payload: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps([3, unique_id, payload]).decode())

    async def send(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def reply(self, unique_id: str, timeout: float = 5) -> list[Any]:
        """The CallResult or CallError frame answering `unique_id`."""
        async with asyncio.timeout(timeout):
            while unique_id not in self._replies:
                self._arrived.clear()
                await self._arrived.wait()
        return self._replies.pop(unique_id)

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        unique_id = str(uuid.uuid4())
        await self.send(orjson.dumps([2, unique_id, action, payload]).decode())
        return await self.reply(unique_id)

    async def wait_calls(self, action: str, n: int = 1, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while sum(a == action for a, _ in self.calls) < n:
                self._arrived.clear()
                await self._arrived.wait()


async def eventually(check: Callable[[], object], timeout: float = 10, step: float = 0.02) -> None:
    """Wait until check() is truthy (bounded)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(step)
