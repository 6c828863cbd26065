"""One simulated OCPP 1.6 charger of the load generator: raw frames, orjson, closed loop.

A charger has at most one Call of its own in flight (OCPP-J) and answers the central
system's Calls at once: RemoteStart/Stop are accepted and followed by the transaction
message a real charger would send, everything else gets a plausible "Accepted".
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson

from cpo_gateway.bench.wire import RawWebsocket, open_websocket

Payload = dict[str, Any]
VENDOR = {"chargePointVendor": "LoadGen", "chargePointModel": "Bench-1"}


def now_iso() -> str:
    # Milliseconds: two StartTransactions in one second must not look like one replayed.
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def meter_payload(connector: int, tx_id: int | None, wh: int) -> Payload:
    """A MeterValues request with several sampled values, as a 22 kW AC charger sends them."""
    sampled = [
        {
            "value": str(wh),
            "measurand": "Energy.Active.Import.Register",
            "unit": "Wh",
            "context": "Sample.Periodic",
            "location": "Outlet",
        },
        {"value": "11040", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": "16.0", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
        {"value": "16.1", "measurand": "Current.Import", "unit": "A", "phase": "L2"},
        {"value": "15.9", "measurand": "Current.Import", "unit": "A", "phase": "L3"},
        {"value": "230.2", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
    ]
    body: Payload = {
        "connectorId": connector,
        "meterValue": [{"timestamp": now_iso(), "sampledValue": sampled}],
    }
    if tx_id is not None:
        body["transactionId"] = tx_id
    return body


class CallFailed(Exception):
    """The central system answered with a CallError, or not at all in time."""


class LoadCharger:
    """Use `connect()`, then `call(action, payload)`; `latencies` is filled by `timed()`."""

    subprotocol = "ocpp1.6"

    def __init__(self, cp_id: str, host: str, port: int, path: str) -> None:
        self.cp_id = cp_id
        self._host, self._port, self._path = host, port, f"{path.rstrip('/')}/{cp_id}"
        self._ws: RawWebsocket | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self.tx_id: int | None = None
        self.meter_wh = 0
        self.id_tag = ""
        self.reply_seconds: list[float] = []  # our own time to answer the server's Calls
        self.on_remote_start: Callable[[str], None] | None = None
        self.on_remote_stop: Callable[[], None] | None = None
        self.calls_received: dict[str, int] = {}

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed.done()

    async def connect(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        self._ws = await open_websocket(
            self._host,
            self._port,
            self._path,
            self._on_message,
            subprotocol=self.subprotocol,
            timeout=timeout,
        )
        self._ws.closed.add_done_callback(self._on_closed)

    def abort(self) -> None:
        if self._ws is not None:
            self._ws.abort()

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()

    async def wait_closed(self) -> None:
        if self._ws is not None:
            await self._ws.closed

    async def closed_within(self, seconds: float) -> bool:
        """Whether the connection closes within `seconds` (the wait never cancels it)."""
        if self._ws is None:
            return True
        done, _ = await asyncio.wait([self._ws.closed], timeout=seconds)
        return bool(done)

    def _on_closed(self, _: object) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))
        self._pending.clear()

    async def call(self, action: str, payload: Payload, timeout: float = 30.0) -> Payload:  # noqa: ASYNC109
        if self._ws is None:
            raise ConnectionError("not connected")
        unique_id = str(next(self._ids))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = fut
        try:
            self._ws.send_text(orjson.dumps([2, unique_id, action, payload]))
            async with asyncio.timeout(timeout):
                result: Payload = await fut
            return result
        except TimeoutError as exc:
            raise CallFailed(f"{action}: no answer in {timeout} s") from exc
        finally:
            self._pending.pop(unique_id, None)

    def _on_message(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            kind, unique_id = msg[0], msg[1]
        except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
            return
        if kind == 2:
            self._answer(unique_id, msg[2], msg[3])
            return
        fut = self._pending.get(unique_id)
        if fut is None or fut.done():
            return
        if kind == 3:
            fut.set_result(msg[2])
        else:
            fut.set_exception(CallFailed(f"CallError {msg[2]}: {msg[3]}"))

    def reply_to(self, action: str, payload: Payload) -> Payload:
        """The answer to a central system's Call: a plausible "Accepted" for the most part."""
        if action == "GetConfiguration":
            key = {"key": "SendLocalListMaxLength", "readonly": True, "value": "1000"}
            return {"configurationKey": [key], "unknownKey": []}
        if action == "GetLocalListVersion":
            return {"listVersion": 0}
        if action == "DataTransfer":
            return {"status": "UnknownVendorId"}
        return {"status": "Accepted"}

    def _answer(self, unique_id: str, action: str, payload: Payload) -> None:
        started = time.perf_counter()
        self.calls_received[action] = self.calls_received.get(action, 0) + 1
        reply = self.reply_to(action, payload)
        if self._ws is not None and not self._ws.closed.done():
            self._ws.send_text(orjson.dumps([3, unique_id, reply]))
        self.reply_seconds.append(time.perf_counter() - started)
        # The transaction message follows the reply, as on a real charger.
        if action == "RemoteStartTransaction" and self.on_remote_start is not None:
            self.on_remote_start(str(payload.get("idTag", "")))
        elif action == "RemoteStopTransaction" and self.on_remote_stop is not None:
            self.on_remote_stop()

    # -- the messages ------------------------------------------------------------------------

    async def boot(self, timeout: float = 30.0) -> Payload:  # noqa: ASYNC109
        return await self.call("BootNotification", VENDOR, timeout)

    async def status(self, status: str, connector: int = 1) -> Payload:
        body = {"connectorId": connector, "errorCode": "NoError", "status": status}
        return await self.call("StatusNotification", body)

    async def heartbeat(self) -> Payload:
        return await self.call("Heartbeat", {})

    async def authorize(self, id_tag: str) -> Payload:
        return await self.call("Authorize", {"idTag": id_tag})

    async def start_transaction(self, id_tag: str, connector: int = 1) -> Payload:
        self.meter_wh += 1
        body = {
            "connectorId": connector,
            "idTag": id_tag,
            "meterStart": self.meter_wh,
            "timestamp": now_iso(),
        }
        reply = await self.call("StartTransaction", body)
        tx = reply.get("transactionId")
        self.tx_id = tx if isinstance(tx, int) else None
        self.id_tag = id_tag
        return reply

    async def meter_values(self, connector: int = 1) -> Payload:
        self.meter_wh += 250
        return await self.call("MeterValues", meter_payload(connector, self.tx_id, self.meter_wh))

    async def stop_transaction(self) -> Payload:
        body: Payload = {
            "transactionId": self.tx_id if self.tx_id is not None else -1,
            "meterStop": self.meter_wh,
            "timestamp": now_iso(),
            "reason": "Local",
            "idTag": self.id_tag,
        }
        reply = await self.call("StopTransaction", body)
        self.tx_id = None
        return reply
