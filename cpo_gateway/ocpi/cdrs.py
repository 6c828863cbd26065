"""OCPI CDRs (sender) from the core's neutral CDR payload (bridge/cdr.py, bridge/owed.py).

The CDR's id is the gateway's CDR id, the session id: stable across retries and replays, so
a partner that keys on it never bills twice. Charging periods: idle time before charging
began (PARKING_TIME), the charging (ENERGY and TIME), the time the car stayed after it
(PARKING_TIME). `total_cost` and its parts come from the connector's tariff (tariffs.py);
a connector without one costs 0 in the default currency (OCPI requires `total_cost`).
`signed_data` is sent only when the payload carries signed readings (the meter's Start and End).
Only an ended session has a CDR: a CDR payload without a stop time (the optional early one
at the start) is NotRenderable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.cdr import cdr_from_dict
from cpo_gateway.bridge.clock import parse_timestamp
from cpo_gateway.bridge.model import SignedReading
from cpo_gateway.ocpi.ports import KnownToken, stamp
from cpo_gateway.ocpi.sessions import (
    DEFAULT_CURRENCY,
    NotRenderable,
    Sessions,
    auth_method,
    ocpi_time,
    seconds_between,
    token_of,
)
from cpo_gateway.ocpi.tariffs import Usage, number, price_session, render_tariff
from cpo_gateway.ocpi.transport import Party

_HOUR = Decimal(3600)


def _hours(seconds: Decimal) -> float:
    return number(seconds / _HOUR)


class Cdrs:
    """Renders CDR payloads for one eMSP."""

    def __init__(
        self,
        catalogue: Catalogue,
        us: Party,
        emsp: Party,
        tokens: Mapping[str, KnownToken] | None = None,
    ) -> None:
        self._us = us
        self._emsp = emsp
        self._sessions = Sessions(catalogue, us, emsp, tokens)

    def cdr(self, payload: Mapping[str, Any], last_updated: datetime) -> dict[str, Any]:
        try:
            cdr = cdr_from_dict(dict(payload))
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise NotRenderable(f"not a CDR payload: {exc!r}") from None
        start, stop = cdr.session_interval.start, cdr.session_interval.stop
        if stop is None:
            raise NotRenderable("session_interval.stop: the session has not ended")
        place = self._sessions.place(cdr.evse_id, cdr.charge_point, cdr.connector)
        tariff = self._sessions.tariff(place)
        total_s = seconds_between(start, stop)
        charging = cdr.charging_interval
        if charging is not None and charging.stop is not None:
            charge_from, charge_to = charging.start, charging.stop
        else:
            charge_from, charge_to = start, stop
        charging_s = min(seconds_between(charge_from, charge_to), total_s)
        idle_before = min(seconds_between(start, charge_from), total_s - charging_s)
        parking_s = total_s - charging_s
        energy = max(0.0, cdr.energy_kwh or 0.0)
        body: dict[str, Any] = {
            "country_code": self._us.country_code,
            "party_id": self._us.party_id,
            "id": cdr.session_id,
            "start_date_time": ocpi_time(start, "session_interval.start"),
            "end_date_time": ocpi_time(stop, "session_interval.stop"),
            "session_id": cdr.session_id,
            "cdr_token": token_of(
                cdr.user.kind.value, cdr.user.identifier, self._emsp, self._sessions.tokens
            ).render(),
            "auth_method": auth_method(cdr.auth_path, cdr.user.kind.value),
            "cdr_location": place.cdr_location(),
            "currency": tariff.currency if tariff else DEFAULT_CURRENCY,
        }
        if tariff is not None:
            body["tariffs"] = [
                render_tariff(tariff, self._us.country_code, self._us.party_id, stamp(last_updated))
            ]
        periods = []
        tariff_id = {"tariff_id": tariff.id} if tariff else {}

        def period(at: str, dims: list[dict[str, Any]]) -> None:
            periods.append({"start_date_time": at, "dimensions": dims} | tariff_id)

        if idle_before > 0:
            period(
                ocpi_time(start, "session_interval.start"),
                [_dim("PARKING_TIME", _hours(idle_before))],
            )
        period(
            ocpi_time(charge_from, "charging_interval.start"),
            [_dim("ENERGY", round(energy, 4)), _dim("TIME", _hours(charging_s))],
        )
        after = parking_s - idle_before
        if after > 0:
            period(
                ocpi_time(charge_to, "charging_interval.stop"),
                [_dim("PARKING_TIME", _hours(after))],
            )
        body["charging_periods"] = periods
        if cdr.signed:
            body["signed_data"] = _signed_data(cdr.signed)
        at = parse_timestamp(start)
        if tariff is not None and at is not None:
            usage = Usage(at, charging_s, parking_s, Decimal(str(energy)), idle_before)
            costs = price_session(tariff, usage, place.zone)
            body["total_cost"] = costs.total.render()
            for key, part in (
                ("total_fixed_cost", costs.fixed),
                ("total_energy_cost", costs.energy),
                ("total_time_cost", costs.time),
                ("total_parking_cost", costs.parking),
            ):
                if part is not None:
                    body[key] = part.render()
        else:
            body["total_cost"] = {"excl_vat": 0.0}
        body["total_energy"] = round(energy, 4)
        body["total_time"] = _hours(total_s)
        if parking_s > 0:
            body["total_parking_time"] = _hours(parking_s)
        body["last_updated"] = stamp(last_updated)
        return body


def _signed_data(readings: tuple[SignedReading, ...]) -> dict[str, Any]:
    """SignedData: the meter's Start and End readings, with its public key when it sent one."""
    data: dict[str, Any] = {"encoding_method": readings[0].encoding}
    key = next((r.public_key for r in readings if r.public_key), None)
    if key is not None:
        data["public_key"] = key
    data["signed_values"] = [
        {"nature": r.nature or "", "plain_data": r.plain, "signed_data": r.data} for r in readings
    ]
    return data


def _dim(kind: str, volume: float) -> dict[str, Any]:
    return {"type": kind, "volume": volume}
