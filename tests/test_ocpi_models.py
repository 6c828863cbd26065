"""The model check itself refuses what is not OCPI 2.2.1 (so a passing check means
something)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cpo_gateway.ocpi.locations import Locations
from cpo_gateway.ocpi.transport import Party
from tests.ocpi_fixtures import catalogue
from tests.ocpi_models import EXTRAWEST, GENERATED, InvalidObject, validate


def _location(tmp_path: Path) -> dict[str, Any]:
    loc = Locations(catalogue(tmp_path), {}, Party("DE", "CPO"), datetime(2026, 3, 1, tzinfo=UTC))
    return loc.all()[0]


def test_a_valid_location_passes(tmp_path: Path) -> None:
    validate("Location", _location(tmp_path))


@pytest.mark.parametrize(
    "spoil",
    [
        lambda b: b.pop("time_zone"),  # required
        lambda b: b.__setitem__("timezone", b.pop("time_zone")),  # misspelt
        lambda b: b.__setitem__("publish", "yes"),  # wrong JSON type
        lambda b: b["evses"][0].__setitem__("status", "OCCUPIED"),  # not an OCPI status
        lambda b: b["evses"][0]["connectors"][0].__setitem__("standard", "Type2"),
    ],
)
def test_a_spoilt_location_fails(tmp_path: Path, spoil: Any) -> None:
    body = _location(tmp_path)
    spoil(body)
    with pytest.raises((InvalidObject, AssertionError, ValueError)):
        validate("Location", body)


@pytest.mark.skipif(not EXTRAWEST.available, reason="scripts/setup makes tests/peers/.venv-ocpi")
@pytest.mark.parametrize(
    "spoil",
    [
        lambda b: b.__setitem__("id", "X" * 37),  # CiString(36)
        lambda b: b.__setitem__("address", "Y" * 46),  # String(45)
        lambda b: b.__setitem__("last_updated", "yesterday"),
        lambda b: b["evses"][0].__setitem__("uid", "Z" * 37),
    ],
)
def test_extrawest_catches_what_the_generated_types_cannot(tmp_path: Path, spoil: Any) -> None:
    body = _location(tmp_path)
    spoil(body)
    assert GENERATED["Location"].from_dict(body).to_dict() == body  # types alone pass it
    with pytest.raises(InvalidObject, match="extrawest-ocpi"):
        validate("Location", body)
