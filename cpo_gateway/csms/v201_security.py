"""OCPP 2.0.1 certificate messages, on the shared CertificateService (security.py), and the
certificate commands the operator sends a 2.0.1 charger.

SignCertificate and SecurityEventNotification carry the same fields in 2.0.1 as in the 1.6
security extension (csr; type, timestamp, techInfo), so the 1.6 parsers read them; 2.0.1
adds `certificateType`, and only ChargingStationCertificate (or none) is signed here: the
gateway is no V2G PKI. CertificateSigned goes out after the answer, as for 1.6.

InstallCertificate, GetInstalledCertificateIds and DeleteCertificate are the 1.6 commands
with 2.0.1's certificate types (the 1.6 name CentralSystemRootCertificate is read as
CSMSRootCertificate, so an operator's command works for either version); DeleteCertificate
names a certificate by the same certificateHashData in both. Builders raise ValueError on
what the schema forbids, as the 1.6 ones do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cpo_gateway.csms.connection import ChargerConnection
from cpo_gateway.csms.v16_security import (
    MAX_CERTIFICATE,
    SecurityEvent,
    parse_security_event,
    parse_sign_certificate,
    sign_certificate_conf,
)
from cpo_gateway.csms.v16_security import delete_certificate_req as delete_certificate_req

if TYPE_CHECKING:
    from cpo_gateway.csms.handlers201 import Handlers201
    from cpo_gateway.csms.security import CertificateService

STATION_CERTIFICATE = "ChargingStationCertificate"
INSTALL_TYPES = frozenset(
    {
        "V2GRootCertificate",
        "MORootCertificate",
        "CSMSRootCertificate",
        "ManufacturerRootCertificate",
    }
)
LISTED_TYPES = INSTALL_TYPES | {"V2GCertificateChain"}
_FROM_1_6 = {"CentralSystemRootCertificate": "CSMSRootCertificate"}


def _type_of(raw: str, allowed: frozenset[str]) -> str:
    """A 2.0.1 certificate type, from its 2.0.1 name or the 1.6 one."""
    kind = _FROM_1_6.get(raw, raw)
    if kind not in allowed:
        raise ValueError(
            f"certificateType must be one of {', '.join(sorted(allowed))}, got {raw!r}"
        )
    return kind


def install_certificate_req(certificate_type: str, certificate_pem: str) -> dict[str, object]:
    kind = _type_of(certificate_type, INSTALL_TYPES)
    if (
        "-----BEGIN CERTIFICATE-----" not in certificate_pem
        or len(certificate_pem) > MAX_CERTIFICATE
    ):
        raise ValueError(
            f"certificate must be one PEM certificate of at most {MAX_CERTIFICATE} characters"
        )
    return {"certificateType": kind, "certificate": certificate_pem}


def get_installed_certificate_ids_req(types: Sequence[str]) -> dict[str, object]:
    """No types: the charger lists all it holds."""
    if not types:
        return {}
    kinds = [_type_of(t, LISTED_TYPES) for t in types]
    return {"certificateType": list(dict.fromkeys(kinds))}


def parse_sign_certificate_201(cp_id: str, p: dict[str, object]) -> tuple[str, str]:
    kind = p.get("certificateType")
    return parse_sign_certificate(cp_id, p), kind if isinstance(kind, str) else STATION_CERTIFICATE


def register(handlers: Handlers201, certificates: CertificateService | None) -> None:
    """Add SignCertificate and SecurityEventNotification to the 2.0.1 handler table."""

    async def sign(conn: ChargerConnection, parsed: object) -> dict[str, object]:
        assert isinstance(parsed, tuple)
        csr, kind = parsed
        if certificates is None or kind != STATION_CERTIFICATE:
            return sign_certificate_conf(False)
        return sign_certificate_conf(await certificates.accept_csr(conn.charge_point_id, csr))

    async def event(conn: ChargerConnection, parsed: object) -> dict[str, object]:
        assert isinstance(parsed, SecurityEvent)
        if certificates is not None:
            await certificates.security_event(parsed)
        return {}

    handlers.add("SignCertificate", parse_sign_certificate_201, sign)
    handlers.add("SecurityEventNotification", parse_security_event, event)
