"""The baseline central system of the benchmark: what a Python developer writes from the
`ocpp` library's README.

`websockets.serve` and a v16 `ChargePoint` subclass with one `@on` handler per message, every
answer from memory (no database, no EMP, every card accepted), library defaults otherwise
(schema validation on, 30 s response timeout). Any path is taken as the charge point id.
Logging stays at the library default (warnings only), as the gateway's in the benchmark.

Run: python -m cpo_gateway.bench.baseline --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

_transaction_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ChargePoint(Cp):
    """One connected charger; state lives in this object only."""

    transactions: dict[int, int]

    @on(Action.boot_notification)
    def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any
    ) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=_now(), interval=300, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **kwargs: Any
    ) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: Any, **kwargs: Any) -> Any:
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **kwargs: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs: Any
    ) -> call_result.StartTransaction:
        tx_id = next(_transaction_ids)
        self.transactions[tx_id] = meter_start
        return call_result.StartTransaction(
            transaction_id=tx_id, id_tag_info={"status": AuthorizationStatus.accepted}
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self, meter_stop: int, timestamp: str, transaction_id: int, **kwargs: Any
    ) -> call_result.StopTransaction:
        self.transactions.pop(transaction_id, None)
        return call_result.StopTransaction()


async def on_connect(connection: websockets.ServerConnection) -> None:
    charge_point_id = connection.request.path.strip("/") if connection.request else ""
    cp = ChargePoint(charge_point_id.rsplit("/", 1)[-1], connection)
    cp.transactions = {}
    with contextlib.suppress(websockets.ConnectionClosed):
        await cp.start()


async def serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with websockets.serve(on_connect, host, port, subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
