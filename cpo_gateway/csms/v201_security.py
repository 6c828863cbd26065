"""OCPP 2.0.1 certificate messages, on the shared CertificateService (security.py).

SignCertificate and SecurityEventNotification carry the same fields in 2.0.1 as in the 1.6
security extension (csr; type, timestamp, techInfo), so the 1.6 parsers read them; 2.0.1
adds `certificateType`, and only ChargingStationCertificate (or none) is signed here: the
gateway is no V2G PKI. CertificateSigned goes out after the answer, as for 1.6.
"""

from __future__ import annotations

from cpo_gateway.csms.connection import ChargerConnection
from cpo_gateway.csms.handlers201 import Handlers201
from cpo_gateway.csms.security import CertificateService
from cpo_gateway.csms.v16_security import (
    SecurityEvent,
    parse_security_event,
    parse_sign_certificate,
    sign_certificate_conf,
)

STATION_CERTIFICATE = "ChargingStationCertificate"


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
