"""OIOI calls the gateway sends: the rendered bodies (against the spec's examples) and the
reading of an EMP's replies in the shapes peers use.
"""

from __future__ import annotations

from email.utils import formatdate

import orjson
import pytest

from cpo_gateway.bridge.catalogue import Address, Connector, Contact, OpeningHours, Station
from cpo_gateway.bridge.model import (
    Cdr,
    DeliveryStatus,
    EvseStatus,
    Interval,
    StatusUpdate,
    User,
    UserKind,
    VerifyOutcome,
)
from cpo_gateway.oioi.messages import (
    read_delivery,
    read_verify,
    render_cdr,
    render_rfid_verify,
    render_station_post,
    render_status,
)
from cpo_gateway.oioi.replies import MAX_RETRY_AFTER_S, parse_retry_after, read_result

NOW = 1_700_000_000.0

# The spec's station-post example, with "web" replaced by "website": the spec's field list
# says "website" and its example "web"; the field list wins.
SPEC_STATION_POST = {
    "station-post": {
        "station": {
            "id": "abcdef-12345",
            "name": "test",
            "description": "Nice station!",
            "latitude": 1.123,
            "longitude": 2.345,
            "address": {
                "street": "streetname",
                "street-number": "123a",
                "city": "Berlin",
                "zip": "10243",
                "country": "DE",
            },
            "contact": {
                "phone": "+49 30 8122321",
                "fax": "+49 30 8122322",
                "website": "www.example.com",
                "email": "contact@example.com",
            },
            "cpo-id": "DE*8PS",
            "is-open-24": False,
            "connectors": [
                {"id": "DE*8PS*E123456", "name": "Schuko", "speed": 3.7},
                {"id": "DE*8PS*E123457", "name": "Type2", "speed": 11.1},
            ],
            "open-hour-notes": [
                {"times": ["07:30", "19:00"], "days": ["Mo", "Fr"]},
                {"times": ["09:00", "15:00"], "days": ["Sa", "Sa"]},
            ],
            "notes": "Additional info.",
            "is-reservable": False,
            "floor-level": 1,
            "is-free-charge": False,
            "total-parking": 2,
            "is-green-power-available": False,
            "is-plugin-charge": False,
            "is-roofed": False,
            "is-private": False,
            "deleted": True,
        },
        "partner-identifier": "1",
    }
}


def spec_station() -> Station:
    return Station(
        id="abcdef-12345",
        name="test",
        description="Nice station!",
        latitude=1.123,
        longitude=2.345,
        address=Address("streetname", "123a", "Berlin", "10243", "DE"),
        contact=Contact("+49 30 8122321", "+49 30 8122322", "www.example.com", "contact@example.com"),
        cpo_id="DE*8PS",
        is_open_24=False,
        connectors=(
            Connector("DE*8PS*E123456", "Schuko", 3.7, "cp-1", 1),
            Connector("DE*8PS*E123457", "Type2", 11.1, "cp-1", 2),
            # Same EVSE ID as the first: one connector to the EMP, the first one kept.
            Connector("DE*8PS*E123456", "Type2", 22.0, "cp-1", 3),
        ),
        open_hour_notes=(OpeningHours(("07:30", "19:00"), ("Mo", "Fr")),
                         OpeningHours(("09:00", "15:00"), ("Sa", "Sa"))),
        notes="Additional info.",
        is_reservable=False,
        floor_level=1,
        is_free_charge=False,
        total_parking=2,
        is_green_power_available=False,
        is_plugin_charge=False,
        is_roofed=False,
        is_private=False,
    )  # fmt: skip


# --- renderers ------------------------------------------------------------------------------
def test_station_post_matches_the_spec_example() -> None:
    body = render_station_post(spec_station(), "1", deleted=True)
    assert body == SPEC_STATION_POST
    assert orjson.loads(orjson.dumps(body)) == SPEC_STATION_POST


def test_station_post_omits_unknown_optional_fields() -> None:
    station = Station(
        id="s-1",
        name="Depot",
        latitude=52.5,
        longitude=13.4,
        address=Address("Main", "1", "Berlin", "10115", "DE"),
        contact=Contact("+49 30 1"),
        cpo_id="DE*ABC",
        is_open_24=True,
        connectors=(Connector("DE*ABC*E1", "Type2", 22.0, "cp-9", 1),),
    )
    body = render_station_post(station, "p-1")["station-post"]
    assert isinstance(body, dict)
    assert body["partner-identifier"] == "p-1"
    assert body["station"] == {
        "id": "s-1",
        "name": "Depot",
        "latitude": 52.5,
        "longitude": 13.4,
        "address": {
            "street": "Main",
            "street-number": "1",
            "city": "Berlin",
            "zip": "10115",
            "country": "DE",
        },
        "contact": {"phone": "+49 30 1"},
        "cpo-id": "DE*ABC",
        "is-open-24": True,
        "connectors": [{"id": "DE*ABC*E1", "name": "Type2", "speed": 22.0}],
        "deleted": False,
    }


def test_status_matches_the_spec_example() -> None:
    update = StatusUpdate(
        "DE*8PS*E123456", EvseStatus.AVAILABLE, "123456-123456-abcdef-abc123-456def"
    )
    assert render_status(update) == {
        "connector-post-status": {
            "connector-id": "DE*8PS*E123456",
            "partner-identifier": "123456-123456-abcdef-abc123-456def",
            "status": "Available",
        }
    }  # fmt: skip


def test_cdr_matches_the_spec_example() -> None:
    cdr = Cdr(
        session_id="abcdef-123456-abc123-456def",
        evse_id="DE*8PS*ETABCD*1",
        user=User(UserKind.RFID, "12345678"),
        session_interval=Interval("2010-01-01T11:00:00+00:00", "2010-01-01T17:00:00+00:00"),
        partner_identifier="123456-123456-abcdef-abc123-456def",
        charging_interval=Interval("2010-01-01T12:00:00+00:00", "2010-01-01T16:00:00+00:00"),
        energy_kwh=16.5,
    )
    # The spec's example without "calculated-cost": the CPO does not price sessions here.
    assert render_cdr(cdr) == {
        "session-post": {
            "user": {"identifier-type": "rfid", "identifier": "12345678"},
            "session-id": "abcdef-123456-abc123-456def",
            "connector-id": "DE*8PS*ETABCD*1",
            "session-interval": {
                "start": "2010-01-01T11:00:00+00:00",
                "stop": "2010-01-01T17:00:00+00:00",
            },
            "charging-interval": {
                "start": "2010-01-01T12:00:00+00:00",
                "stop": "2010-01-01T16:00:00+00:00",
            },
            "energy-consumed": 16.5,
            "partner-identifier": "123456-123456-abcdef-abc123-456def",
        }
    }


def test_cdr_of_a_running_session_and_energy_rounding() -> None:
    user = User(UserKind.EVCO_ID, "DE*8PS*123456*7")
    running = Cdr("s", "DE*8PS*E1", user, Interval("2024-01-01T10:00:00+01:00"), "p")
    assert render_cdr(running) == {
        "session-post": {
            "user": {"identifier-type": "evco-id", "identifier": "DE*8PS*123456*7"},
            "session-id": "s",
            "connector-id": "DE*8PS*E1",
            "session-interval": {"start": "2024-01-01T10:00:00+01:00"},
            "partner-identifier": "p",
        }
    }
    metered = Cdr("s", "E", user, Interval("t0", "t1"), "p", energy_kwh=16.123456)
    assert render_cdr(metered)["session-post"]["energy-consumed"] == 16.123  # type: ignore[index]
    broken = Cdr("s", "E", user, Interval("t0", "t1"), "p", energy_kwh=float("nan"))
    assert "energy-consumed" not in render_cdr(broken)["session-post"]  # type: ignore[operator]


def test_rfid_verify_matches_the_spec_example() -> None:
    assert render_rfid_verify("12345678abcdef") == {"rfid-verify": {"rfid": "12345678ABCDEF"}}
    assert render_rfid_verify("not-a-uid") == {"rfid-verify": {"rfid": "not-a-uid"}}


# --- read_delivery --------------------------------------------------------------------------
def result(code: object, message: str = "m") -> bytes:
    return orjson.dumps({"result": {"code": code, "message": message}})


@pytest.mark.parametrize(
    ("http_status", "body", "status", "code"),
    [
        (200, result(0, "Success."), DeliveryStatus.DELIVERED, 0),
        (200, result(11), DeliveryStatus.DELIVERED, 11),
        (200, result("000"), DeliveryStatus.DELIVERED, 0),
        # A 2xx without a readable result is a proxy or a broken peer, not a delivery.
        (200, b"", DeliveryStatus.RETRY, None),
        (204, b"", DeliveryStatus.RETRY, None),
        (200, b"<html>OK</html>", DeliveryStatus.RETRY, None),
        (200, b'{"rfid": {"processed": 2}}', DeliveryStatus.RETRY, None),
        (200, result(181), DeliveryStatus.REJECTED, 181),
        (200, result(211), DeliveryStatus.REJECTED, 211),
        (200, result(189.0), DeliveryStatus.REJECTED, 189),
        (200, result(100), DeliveryStatus.RETRY, 100),
        (200, result(102), DeliveryStatus.RETRY, 102),
        (200, result(302), DeliveryStatus.RETRY, 302),
        (200, result(103), DeliveryStatus.RETRY, 103),
        (200, result(802), DeliveryStatus.RETRY, 802),
        (400, result(230), DeliveryStatus.REJECTED, 230),
        (401, b"", DeliveryStatus.UNAUTHORIZED, None),
        (403, result(210), DeliveryStatus.UNAUTHORIZED, 210),
        (404, b"Not Found", DeliveryStatus.REJECTED, None),
        (408, b"", DeliveryStatus.RETRY, None),
        (425, b"", DeliveryStatus.RETRY, None),
        (429, b"", DeliveryStatus.RETRY, None),
        (500, result(100), DeliveryStatus.RETRY, 100),
        (502, b"<html>Bad Gateway</html>", DeliveryStatus.RETRY, None),
        (503, b"", DeliveryStatus.RETRY, None),
        (302, b"", DeliveryStatus.RETRY, None),
    ],
)
def test_read_delivery_shapes(
    http_status: int, body: bytes, status: DeliveryStatus, code: int | None
) -> None:
    delivery = read_delivery(http_status, body, None, NOW)
    assert (delivery.status, delivery.code, delivery.http_status) == (status, code, http_status)
    assert delivery.detail.startswith(f"HTTP {http_status}")
    assert delivery.retry_after_s is None


def test_a_2xx_that_is_not_a_result_says_what_came_instead() -> None:
    html = read_delivery(200, b"  <html><body>Welcome to the hotel Wi-Fi</body></html>", None, NOW)
    assert html.status is DeliveryStatus.RETRY
    assert html.detail.startswith("HTTP 200: no OIOI result in the body (HTML or XML: <html>")
    empty = read_delivery(200, b"", None, NOW)
    assert empty.detail == "HTTP 200: no OIOI result in the body (empty)"


def test_read_delivery_detail_names_status_code_and_message() -> None:
    delivery = read_delivery(200, result(181, "No such\nEVSE " + "x" * 300), None, NOW)
    assert delivery.detail.startswith("HTTP 200, code 181 (EVSE not found): No such EVSE xxx")
    assert len(delivery.detail) < 200
    error = read_delivery(400, b'{"error": "partner-identifier unknown"}', None, NOW)
    assert error.detail == "HTTP 400: partner-identifier unknown"
    nested = read_delivery(403, b'{"error": {"code": 220, "message": "no"}}', None, NOW)
    assert (nested.code, nested.detail) == (220, "HTTP 403, code 220 (" + (
        "API key not allowed to access the requested resource): no"
    ))  # fmt: skip


def test_retry_after_seconds_and_http_date() -> None:
    assert read_delivery(503, b"", "120", NOW).retry_after_s == 120.0
    assert read_delivery(429, b"", " 0 ", NOW).retry_after_s == 0.0
    in_90_s = formatdate(NOW + 90, usegmt=True)
    assert read_delivery(503, b"", in_90_s, NOW).retry_after_s == 90.0
    past = formatdate(NOW - 3600, usegmt=True)
    assert read_delivery(503, b"", past, NOW).retry_after_s == 0.0
    assert read_delivery(503, b"", "soon", NOW).retry_after_s is None
    assert read_delivery(503, b"", "-5", NOW).retry_after_s is None
    assert read_delivery(503, b"", "9" * 5000, NOW).retry_after_s == MAX_RETRY_AFTER_S
    # Only a retry waits: a delivered message has nothing to wait for.
    assert read_delivery(200, result(0), "120", NOW).retry_after_s is None


def test_retry_after_dates_without_zone_are_utc() -> None:
    assert parse_retry_after(formatdate(NOW + 30), NOW) == 30.0  # "-0000" zone
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:20 +0100", NOW) == 0.0
    assert parse_retry_after("", NOW) is None


def test_read_result_tolerates_shapes() -> None:
    assert read_result(b'{"code": 181, "message": "x"}') == (181, "x")
    assert read_result(b'{"result": {"code": true}}') == (None, None)
    assert read_result(b'{"result": {"code": "18a"}}') == (None, None)
    assert read_result(b"[0]") == (None, None)


# --- read_verify ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("http_status", "body", "outcome"),
    [
        (200, result(0), VerifyOutcome.ACCEPTED),
        (200, result(12), VerifyOutcome.ACCEPTED),
        (200, result(191), VerifyOutcome.UNKNOWN),
        (200, result(190), VerifyOutcome.UNKNOWN),
        (200, result(195), VerifyOutcome.UNKNOWN),
        (200, result(140), VerifyOutcome.UNKNOWN),
        (200, result(192), VerifyOutcome.BLOCKED),
        (200, result(193), VerifyOutcome.NO_PAYMENT),
        (404, result(191), VerifyOutcome.UNKNOWN),
        (403, result(192), VerifyOutcome.BLOCKED),
        (400, result(193), VerifyOutcome.NO_PAYMENT),
        (200, result(100), VerifyOutcome.UNREACHABLE),
        (200, result(102), VerifyOutcome.UNREACHABLE),
        (200, result(181), VerifyOutcome.UNREACHABLE),
        (200, b"", VerifyOutcome.UNREACHABLE),
        (200, b"{}", VerifyOutcome.UNREACHABLE),
        (200, b"yes", VerifyOutcome.UNREACHABLE),
        (400, result(0), VerifyOutcome.UNREACHABLE),
        (401, result(210), VerifyOutcome.UNREACHABLE),
        (404, b"", VerifyOutcome.UNREACHABLE),
        (500, result(191), VerifyOutcome.UNREACHABLE),
        (503, b"", VerifyOutcome.UNREACHABLE),
        (302, result(0), VerifyOutcome.UNREACHABLE),
    ],
)
def test_read_verify_shapes(http_status: int, body: bytes, outcome: VerifyOutcome) -> None:
    assert read_verify(http_status, body) is outcome
