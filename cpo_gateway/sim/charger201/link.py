"""One websocket connection of the simulated 2.0.1 station, on the `ocpp` library's v201
ChargePoint: it validates every CSMS request and every answer of ours against the OCA 2.0.1
schemas, and routes each request to an `@on` handler here.

Handlers only translate between the library's snake_case keywords and the `StationCommands`
that own the station's state; what must talk back to the CSMS (a Started event after a remote
start, a NotifyReport after GetBaseReport) is a follow-up started after the answer went out,
as in the 1.6 link.
"""

from __future__ import annotations

from typing import Any, Protocol

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action

from cpo_gateway.sim.charger.link import FollowUpHandler, FollowUpLink, Reply


class StationHandler(FollowUpHandler, Protocol):
    """What the station does with each CSMS request; answers from local state."""

    def request_start(
        self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None
    ) -> Reply: ...
    def request_stop(self, transaction_id: str) -> Reply: ...
    def get_variables(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]: ...
    def set_variables(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]: ...
    def get_base_report(self, request_id: int, report_base: str) -> Reply: ...
    def reset(self, reset_type: str, evse_id: int | None) -> Reply: ...
    def trigger(self, requested_message: str, evse: dict[str, Any] | None) -> Reply: ...
    def change_availability(
        self, operational_status: str, evse: dict[str, Any] | None
    ) -> Reply: ...
    def unlock_connector(self, evse_id: int, connector_id: int) -> str: ...
    def send_local_list(
        self, version_number: int, update_type: str, entries: list[dict[str, Any]]
    ) -> str: ...
    def get_local_list_version(self) -> int: ...
    def get_transaction_status(self, transaction_id: str | None) -> dict[str, Any]: ...


class StationLink(FollowUpLink, ChargePoint):
    def __init__(
        self,
        station_id: str,
        connection: Any,
        handler: StationHandler,
        *,
        response_timeout: float,
        logger: Any,
    ) -> None:
        super().__init__(
            station_id, connection, handler, response_timeout=response_timeout, logger=logger
        )
        self._handler = handler

    @on(Action.request_start_transaction)
    def _on_request_start(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        **_: Any,
    ) -> call_result.RequestStartTransaction:
        reply = self._handler.request_start(id_token, remote_start_id, evse_id)
        return call_result.RequestStartTransaction(status=self._reply(reply, "request-start"))

    @on(Action.request_stop_transaction)
    def _on_request_stop(self, transaction_id: str, **_: Any) -> call_result.RequestStopTransaction:
        reply = self._handler.request_stop(transaction_id)
        return call_result.RequestStopTransaction(status=self._reply(reply, "request-stop"))

    @on(Action.get_variables)
    def _on_get_variables(
        self, get_variable_data: list[dict[str, Any]], **_: Any
    ) -> call_result.GetVariables:
        return call_result.GetVariables(
            get_variable_result=self._handler.get_variables(get_variable_data)
        )

    @on(Action.set_variables)
    def _on_set_variables(
        self, set_variable_data: list[dict[str, Any]], **_: Any
    ) -> call_result.SetVariables:
        return call_result.SetVariables(
            set_variable_result=self._handler.set_variables(set_variable_data)
        )

    @on(Action.get_base_report)
    def _on_get_base_report(
        self, request_id: int, report_base: str, **_: Any
    ) -> call_result.GetBaseReport:
        reply = self._handler.get_base_report(request_id, report_base)
        return call_result.GetBaseReport(status=self._reply(reply, "base-report"))

    @on(Action.reset)
    def _on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> call_result.Reset:  # noqa: A002
        return call_result.Reset(status=self._reply(self._handler.reset(type, evse_id), "reset"))

    @on(Action.trigger_message)
    def _on_trigger(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> call_result.TriggerMessage:
        reply = self._handler.trigger(requested_message, evse)
        return call_result.TriggerMessage(status=self._reply(reply, "trigger"))

    @on(Action.change_availability)
    def _on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> call_result.ChangeAvailability:
        reply = self._handler.change_availability(operational_status, evse)
        return call_result.ChangeAvailability(status=self._reply(reply, "availability"))

    @on(Action.unlock_connector)
    def _on_unlock_connector(
        self, evse_id: int, connector_id: int, **_: Any
    ) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(
            status=self._handler.unlock_connector(evse_id, connector_id)
        )

    @on(Action.send_local_list)
    def _on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> call_result.SendLocalList:
        entries = local_authorization_list or []
        status = self._handler.send_local_list(version_number, update_type, entries)
        return call_result.SendLocalList(status=status)

    @on(Action.get_local_list_version)
    def _on_get_local_list_version(self, **_: Any) -> call_result.GetLocalListVersion:
        return call_result.GetLocalListVersion(
            version_number=self._handler.get_local_list_version()
        )

    @on(Action.get_transaction_status)
    def _on_get_transaction_status(
        self, transaction_id: str | None = None, **_: Any
    ) -> call_result.GetTransactionStatus:
        answer = self._handler.get_transaction_status(transaction_id)
        return call_result.GetTransactionStatus(
            messages_in_queue=answer["messagesInQueue"],
            ongoing_indicator=answer.get("ongoingIndicator"),
        )
