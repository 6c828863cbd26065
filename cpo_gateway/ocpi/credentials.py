"""The Credentials object (credentials module, 2.2.1): parsed at the edge, rendered for peers.

``{"token": "...", "url": "<versions URL>", "roles": [{"role": "CPO", "party_id": "EXA",
"country_code": "NL", "business_details": {"name": "..."}}]}``

A parse error is an `OcpiError` 2001 whose message names the JSON path
("roles[1].party_id: expected 3 letters or digits, got 'TOOLONG'").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cpo_gateway.ocpi.transport import TOKEN_MAX, OcpiError, OcpiStatus, Party

ROLES = frozenset({"CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP"})
MAX_ROLES = 32  # a platform hosting more parties than this is not one peer we serve
_TOKEN = re.compile(rf"[!-~]{{1,{TOKEN_MAX}}}")
_URL = re.compile(r"https?://[^\s/]+[^\s]*")
URL_MAX = 255  # types: URL is string(255)
NAME_MAX = 100  # BusinessDetails.name: string(100)


@dataclass(frozen=True, slots=True)
class CredentialsRole:
    role: str
    party: Party
    business_name: str = ""

    def render(self) -> dict[str, object]:
        return {
            "role": self.role,
            "party_id": self.party.party_id,
            "country_code": self.party.country_code,
            "business_details": {"name": self.business_name},
        }


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str = field(repr=False)
    url: str
    roles: tuple[CredentialsRole, ...]

    def render(self) -> dict[str, object]:
        return {"token": self.token, "url": self.url, "roles": [r.render() for r in self.roles]}

    @property
    def parties(self) -> frozenset[Party]:
        return frozenset(r.party for r in self.roles)


def parse_token(value: object, where: str = "token") -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        # The value is a secret, even a malformed one: the message (and the log) tells only
        # its type and length.
        shown = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise OcpiError(
            OcpiStatus.INVALID_PARAMETERS,
            f"{where}: expected 1 to {TOKEN_MAX} printable ASCII characters, got {shown}",
            http_status=200,
        )
    return value


def parse_url(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > URL_MAX or not _URL.fullmatch(value):
        raise OcpiError.invalid(where, f"an http(s) URL of at most {URL_MAX} characters", value)
    return value


def _role(obj: object, where: str) -> CredentialsRole:
    if not isinstance(obj, Mapping):
        raise OcpiError.invalid(where, "an object", obj)
    role = obj.get("role")
    if role is None:
        raise OcpiError.missing(f"{where}.role")
    if not isinstance(role, str) or role not in ROLES:
        raise OcpiError.invalid(f"{where}.role", "one of " + ", ".join(sorted(ROLES)), role)
    for key in ("country_code", "party_id"):
        if key not in obj:
            raise OcpiError.missing(f"{where}.{key}")
    party = Party.parse(obj.get("country_code"), obj.get("party_id"), where + ".")
    details = obj.get("business_details")
    if details is None:
        raise OcpiError.missing(f"{where}.business_details")
    if not isinstance(details, Mapping):
        raise OcpiError.invalid(f"{where}.business_details", "an object", details)
    name = details.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= NAME_MAX:
        raise OcpiError.invalid(
            f"{where}.business_details.name", f"a string of 1 to {NAME_MAX} characters", name
        )
    return CredentialsRole(str(role), party, name)


def parse_credentials(obj: Any, where: str = "") -> Credentials:
    """A peer's Credentials object, or 2001 naming the first bad field."""
    if not isinstance(obj, Mapping):
        raise OcpiError.invalid(where or "body", "a Credentials object", obj)
    for key in ("token", "url", "roles"):
        if key not in obj:
            raise OcpiError.missing(where + key)
    token = parse_token(obj["token"], where + "token")
    url = parse_url(obj["url"], where + "url")
    roles = obj["roles"]
    if not isinstance(roles, list) or not 0 < len(roles) <= MAX_ROLES:
        raise OcpiError.invalid(where + "roles", f"a list of 1 to {MAX_ROLES} roles", roles)
    parsed = tuple(_role(r, f"{where}roles[{i}]") for i, r in enumerate(roles))
    seen: set[tuple[str, Party]] = set()
    for i, r in enumerate(parsed):
        if (r.role, r.party) in seen:
            raise OcpiError.invalid(f"{where}roles[{i}]", "each role and party once", str(r.party))
        seen.add((r.role, r.party))
    return Credentials(token, url, parsed)
