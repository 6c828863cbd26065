"""A fleet of light OCPP 1.6J chargers for the reconnect storm, run as its own process so the
gateway's event loop measures only the gateway's work.

`python -m cpo_gateway.bench.soak.fleet URL FIRST COUNT WINDOW_S SEED`: connects COUNT chargers
(ids from soak_gateway.charger_id), boots them, drops every connection at once (the TCP
connection is aborted, as when a site router reboots), reconnects each after a random delay
within WINDOW_S, prints `{"phase": "dropped"}` at the drop, then `{"phase": "holding", ...}`
once all are back, and holds the connections
until a line arrives on stdin; then closes them and prints `{"phase": "done"}`.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol

from cpo_gateway.bench.soak.gateway import charger_id

OCPP16 = Subprotocol("ocpp1.6")
_CONNECT_TRIES = 20
_OPENING_AT_ONCE = 20


def _answer(action: str) -> dict[str, Any]:
    if action == "GetLocalListVersion":
        return {"listVersion": 0}
    if action == "GetConfiguration":
        return {"configurationKey": []}
    return {"status": "Accepted"}


class LightCharger:
    """A websocket that boots, answers the central system's Calls and otherwise stays quiet."""

    def __init__(self, url: str, cp_id: str) -> None:
        self.url = f"{url}/{cp_id}"
        self.cp_id = cp_id
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.replies: dict[str, asyncio.Future[list[Any]]] = {}
        self.errors: list[str] = []

    async def open(self, boot: bool) -> None:
        self.ws = await connect(self.url, subprotocols=[OCPP16], open_timeout=30)
        self.reader = asyncio.create_task(self._read(self.ws))
        if boot:
            await self.call(
                "BootNotification", {"chargePointVendor": "soak", "chargePointModel": "fleet"}
            )
        else:
            await self.call("Heartbeat", {})
        await self.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        )

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        assert self.ws is not None
        unique_id = uuid.uuid4().hex
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.replies[unique_id] = future
        try:
            await self.ws.send(orjson.dumps([2, unique_id, action, payload]).decode())
            async with asyncio.timeout(30):
                frame = await future
        finally:
            self.replies.pop(unique_id, None)
        if frame[0] != 3:
            self.errors.append(f"{action}: {frame}")
        return frame

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                frame = orjson.loads(message)
                if frame[0] == 2:
                    await ws.send(orjson.dumps([3, frame[1], _answer(frame[2])]).decode())
                # A call that timed out has given up on its answer: drop a late one.
                elif (future := self.replies.pop(frame[1], None)) and not future.done():
                    future.set_result(frame)
        except WebSocketException:
            pass

    def drop(self) -> None:
        """Abort the TCP connection: no close frame, as when the network goes away."""
        if self.ws is not None:
            self.ws.transport.abort()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


async def _open_with_retry(charger: LightCharger, boot: bool) -> bool:
    for attempt in range(_CONNECT_TRIES):
        try:
            await charger.open(boot)
            return True
        except (OSError, TimeoutError, WebSocketException) as exc:
            charger.errors.append(f"connect attempt {attempt}: {exc!r}")
            await asyncio.sleep(0.2 * (attempt + 1))
    return False


async def run_fleet(
    url: str, first: int, count: int, window_s: float, seed: int
) -> tuple[dict[str, Any], list[LightCharger]]:
    rng = random.Random(seed)
    fleet = [LightCharger(url, charger_id(i)) for i in range(first, first + count)]
    gate = asyncio.Semaphore(_OPENING_AT_ONCE)

    async def first_open(charger: LightCharger) -> bool:
        async with gate:
            return await _open_with_retry(charger, boot=True)

    opened = sum(await asyncio.gather(*(first_open(c) for c in fleet)))
    for charger in fleet:
        charger.drop()
    await asyncio.gather(*(c.reader for c in fleet if c.reader is not None))
    dropped_at = time.monotonic()
    sys.stdout.write(orjson.dumps({"phase": "dropped", "opened": opened}).decode() + "\n")
    sys.stdout.flush()

    async def come_back(charger: LightCharger) -> tuple[bool, float]:
        await asyncio.sleep(rng.uniform(0, window_s))
        ok = await _open_with_retry(charger, boot=False)
        return ok, time.monotonic() - dropped_at

    results = await asyncio.gather(*(come_back(c) for c in fleet))
    return {
        "phase": "holding",
        "chargers": count,
        "opened": opened,
        "reconnected": sum(ok for ok, _ in results),
        "all_back_after_s": round(max((t for _, t in results), default=0.0), 2),
        "call_errors": sum(
            len([e for e in c.errors if not e.startswith("connect")]) for c in fleet
        ),
        "connect_retries": sum(
            len([e for e in c.errors if e.startswith("connect")]) for c in fleet
        ),
    }, fleet


async def main(argv: list[str]) -> int:
    url, first, count, window_s, seed = argv
    summary, fleet = await run_fleet(url, int(first), int(count), float(window_s), int(seed))
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)
    await asyncio.gather(*(c.close() for c in fleet), return_exceptions=True)
    sys.stdout.write('{"phase": "done"}\n')
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
