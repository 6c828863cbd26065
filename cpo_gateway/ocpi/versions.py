"""Versions and version details (version_information_endpoint): ours, and reading a peer's.

We speak 2.2.1 only. Our endpoint list names each module with the interface role the CPO
implements (credentials: SENDER, as the spec advises for one's own credentials endpoint).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cpo_gateway.ocpi.credentials import parse_url
from cpo_gateway.ocpi.transport import MODULES, VERSION, OcpiError, OcpiStatus

SENDER = "SENDER"
RECEIVER = "RECEIVER"
INTERFACE_ROLES = frozenset({SENDER, RECEIVER})
MAX_ENTRIES = 64


@dataclass(frozen=True, slots=True)
class Endpoint:
    identifier: str
    role: str
    url: str

    def render(self) -> dict[str, str]:
        return {"identifier": self.identifier, "role": self.role, "url": self.url}


@dataclass(frozen=True, slots=True)
class VersionDetails:
    version: str
    endpoints: tuple[Endpoint, ...]

    def url(self, identifier: str, role: str | None = None) -> str | None:
        """The URL of a module (of that interface role, when given; credentials' role is
        disregarded as the spec advises)."""
        for e in self.endpoints:
            if e.identifier == identifier and (
                role is None or identifier == "credentials" or e.role == role
            ):
                return e.url
        return None

    def render(self) -> dict[str, object]:
        return {"version": self.version, "endpoints": [e.render() for e in self.endpoints]}

    def as_details(self) -> dict[str, str]:
        """ "identifier/ROLE" -> URL, to store."""
        return {f"{e.identifier}/{e.role}": e.url for e in self.endpoints}


def versions_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/versions"


def version_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/{VERSION}"


def module_url(base_url: str, identifier: str) -> str:
    return f"{version_url(base_url)}/{identifier}"


def our_versions(base_url: str) -> list[dict[str, str]]:
    return [{"version": VERSION, "url": version_url(base_url)}]


def our_details(base_url: str, modules: Iterable[tuple[str, str]]) -> VersionDetails:
    """`modules`: (identifier, interface role) of every module the listener serves."""
    endpoints = [Endpoint("credentials", SENDER, module_url(base_url, "credentials"))]
    endpoints += [Endpoint(i, r, module_url(base_url, i)) for i, r in modules]
    return VersionDetails(VERSION, tuple(endpoints))


def pick_version(data: Any) -> str:
    """The URL of 2.2.1 in a peer's versions list; 3002 when it offers no 2.2.1, 2001 when
    the list is malformed (naming the entry)."""
    if not isinstance(data, list) or len(data) > MAX_ENTRIES:
        raise OcpiError.invalid("data", f"a list of at most {MAX_ENTRIES} versions", data)
    found = None
    offered = []
    for i, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise OcpiError.invalid(f"data[{i}]", "a Version object", entry)
        version = entry.get("version")
        if not isinstance(version, str):
            raise OcpiError.invalid(f"data[{i}].version", "a version number", version)
        offered.append(version)
        if version == VERSION:
            found = parse_url(entry.get("url"), f"data[{i}].url")
    if found is None:
        raise OcpiError(
            OcpiStatus.UNSUPPORTED_VERSION,
            f"data: no version {VERSION} offered (got {', '.join(offered[:8]) or 'none'})",
        )
    return found


def parse_details(data: Any, required: Sequence[str] = ("credentials",)) -> VersionDetails:
    """A peer's 2.2.1 details; 3003 when a `required` module is missing."""
    if not isinstance(data, Mapping):
        raise OcpiError.invalid("data", "a VersionDetails object", data)
    if data.get("version") != VERSION:
        raise OcpiError(
            OcpiStatus.UNSUPPORTED_VERSION,
            f"data.version: expected {VERSION!r}, got {data.get('version')!r}",
        )
    raw = data.get("endpoints")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_ENTRIES:
        raise OcpiError.invalid("data.endpoints", f"a list of 1 to {MAX_ENTRIES} endpoints", raw)
    endpoints = []
    for i, e in enumerate(raw):
        where = f"data.endpoints[{i}]"
        if not isinstance(e, Mapping):
            raise OcpiError.invalid(where, "an Endpoint object", e)
        identifier = e.get("identifier")
        if not isinstance(identifier, str) or not 0 < len(identifier) <= 32:
            raise OcpiError.invalid(f"{where}.identifier", "a module identifier", identifier)
        role = e.get("role")
        if not isinstance(role, str) or role not in INTERFACE_ROLES:
            raise OcpiError.invalid(f"{where}.role", "SENDER or RECEIVER", role)
        url = parse_url(e.get("url"), f"{where}.url")
        if identifier in MODULES or identifier == "versions":
            endpoints.append(Endpoint(identifier, str(role), url))
        # other identifiers (later modules, custom ones) are kept out: we call none of them
    details = VersionDetails(VERSION, tuple(endpoints))
    for identifier in required:
        if details.url(identifier) is None:
            raise OcpiError(
                OcpiStatus.NO_MATCHING_ENDPOINTS, f"data.endpoints: no {identifier!r} endpoint"
            )
    return details


def details_from_stored(stored: Mapping[str, Any]) -> VersionDetails:
    """The details a link stored (`as_details`), as they were."""
    endpoints = []
    for key, url in stored.items():
        identifier, _, role = key.partition("/")
        if role in INTERFACE_ROLES and isinstance(url, str):
            endpoints.append(Endpoint(identifier, role, url))
    return VersionDetails(VERSION, tuple(endpoints))
