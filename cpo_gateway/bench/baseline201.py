"""The 2.0.1 baseline central system of the benchmark: the `ocpp` library's README example for
OCPP 2.0.1, plus the handlers the `mixed201` load needs.

`websockets.serve` with subprotocol `ocpp2.0.1` and a v201 `ChargePoint` subclass with one
`@on` handler per message, every answer from memory (no database, no EMP, every token
accepted), library defaults otherwise (schema validation on, 30 s response timeout), logging
at the library default as the gateway's in the benchmark. Any path is taken as the station id.

Run: python -m cpo_gateway.bench.baseline201 --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v201 import ChargePoint as Cp
from ocpp.v201 import call_result
from ocpp.v201.enums import Action, AuthorizationStatusEnumType, RegistrationStatusEnumType


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ChargePoint(Cp):
    """One connected station; what it reports lives in this object only."""

    transactions: dict[str, int]

    @on(Action.boot_notification)
    def on_boot_notification(
        self, charging_station: dict[str, Any], reason: str, **kwargs: Any
    ) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=_now(), interval=300, status=RegistrationStatusEnumType.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status_notification(
        self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **kwargs: Any
    ) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> call_result.Authorize:
        return call_result.Authorize(id_token_info={"status": AuthorizationStatusEnumType.accepted})

    @on(Action.transaction_event)
    def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        trigger_reason: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        **kwargs: Any,
    ) -> call_result.TransactionEvent:
        transaction_id = str(transaction_info["transaction_id"])
        if event_type == "Ended":
            self.transactions.pop(transaction_id, None)
        else:
            self.transactions[transaction_id] = seq_no
        return call_result.TransactionEvent()


async def on_connect(connection: websockets.ServerConnection) -> None:
    station_id = connection.request.path.strip("/") if connection.request else ""
    cp = ChargePoint(station_id.rsplit("/", 1)[-1], connection)
    cp.transactions = {}
    with contextlib.suppress(websockets.ConnectionClosed):
        await cp.start()


async def serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with websockets.serve(on_connect, host, port, subprotocols=["ocpp2.0.1"]):  # type: ignore[list-item]
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
