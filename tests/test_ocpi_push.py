"""What each neutral outbox row, as the core writes it, becomes toward an OCPI partner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cpo_gateway.bridge.cdr import build_cdr, build_session_update, cdr_to_dict
from cpo_gateway.bridge.model import EvseStatus
from cpo_gateway.bridge.owed import Owed, SessionPhase
from cpo_gateway.bridge.station_sync import station_payload
from cpo_gateway.ocpi.ports import EvseState
from cpo_gateway.ocpi.push import PushContext, render_push
from cpo_gateway.ocpi.sessions import NotRenderable
from cpo_gateway.ocpi.transport import Party
from tests.ocpi_fixtures import catalogue
from tests.ocpi_models import validate
from tests.test_ocpi_sessions_cdrs import START, _session, _tx

US = Party("DE", "CPO")
WRITTEN = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)


def _ctx(tmp_path: Path) -> PushContext:
    states = {"DE*CPO*E2001": EvseState(EvseStatus.AVAILABLE)}
    return PushContext(
        catalogue(tmp_path), US, Party("NL", "EMS"), START - timedelta(days=1), states
    )


def test_a_station_is_put_whole_with_its_current_statuses_and_removed_when_deleted(
    tmp_path: Path,
) -> None:
    ctx = _ctx(tmp_path)
    station = ctx.catalogue.stations[1]
    push = render_push(ctx, Owed.STATION, station_payload(station, "x", False), WRITTEN)
    assert push is not None and (push.module, push.method, push.path) == (
        "locations",
        "PUT",
        "/DE/CPO/DE-MUC-MAX-01",
    )
    validate("Location", push.body)
    assert push.body["evses"][0]["status"] == "AVAILABLE"
    gone = render_push(ctx, Owed.STATION, station_payload(station, "x", True), WRITTEN)
    assert gone is not None and [e["status"] for e in gone.body["evses"]] == ["REMOVED"]
    validate("Location", gone.body)


def test_a_status_change_is_a_patch_of_the_evse(tmp_path: Path) -> None:
    payload = {"evse_id": "DE*CPO*E1001*2", "status": "Offline", "partner_identifier": "x"}
    push = render_push(_ctx(tmp_path), Owed.EVSE_STATUS, payload, WRITTEN)
    assert push is not None
    assert (push.method, push.path) == ("PATCH", "/DE/CPO/DE-BER-ALEX-01/DE*CPO*E1001*2")
    assert push.body == {"status": "UNKNOWN", "last_updated": "2026-03-02T12:30:00Z"}
    faulted = render_push(
        _ctx(tmp_path), Owed.EVSE_STATUS, payload | {"reported": "Faulted"}, WRITTEN
    )
    assert faulted is not None and faulted.body["status"] == "OUTOFORDER"
    with pytest.raises(NotRenderable, match="evse_id"):
        render_push(_ctx(tmp_path), Owed.EVSE_STATUS, payload | {"evse_id": "DE*CPO*E9"}, WRITTEN)


@pytest.mark.parametrize(
    ("phase", "method"),
    [(SessionPhase.STARTED, "PUT"), (SessionPhase.CHARGING, "PATCH"), (SessionPhase.ENDED, "PUT")],
)
def test_session_updates_put_at_start_and_end_and_patch_while_charging(
    tmp_path: Path, phase: SessionPhase, method: str
) -> None:
    tx = _tx(45, 0, 7.25, stopped=phase is SessionPhase.ENDED)
    now = (START + timedelta(minutes=45)).timestamp()
    update = build_session_update(tx, _session(), "DE*CPO*E1001*1", "x", phase, now)
    push = render_push(_ctx(tmp_path), Owed.SESSION, update.to_dict(), WRITTEN)
    assert push is not None and (push.module, push.method) == ("sessions", method)
    assert push.path == f"/DE/CPO/{update.session_id}"
    assert push.body["kwh"] == 7.25
    if method == "PUT":
        validate("Session", push.body)
    else:
        assert set(push.body) == {"kwh", "status", "last_updated"}


def test_a_cdr_is_posted_and_an_early_one_owes_nothing(tmp_path: Path) -> None:
    ended = cdr_to_dict(build_cdr(_tx(60, 5, 11.0), _session(), "DE*CPO*E1001*1", "x"))
    push = render_push(_ctx(tmp_path), Owed.CDR, ended, WRITTEN)
    assert push is not None and (push.module, push.method, push.path) == ("cdrs", "POST", "")
    validate("Cdr", push.body)
    early = cdr_to_dict(
        build_cdr(_tx(60, 5, 11.0, stopped=False), _session(), "DE*CPO*E1001*1", "x")
    )
    assert render_push(_ctx(tmp_path), Owed.CDR, early, WRITTEN) is None
    assert render_push(_ctx(tmp_path), Owed.COMMAND_RESULT, {}, WRITTEN) is None
