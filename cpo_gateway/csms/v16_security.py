"""The OCPP 1.6 security extension: what a charger sends (SignCertificate,
SecurityEventNotification) read into plain values, and the certificate commands the
central system sends (CertificateSigned, InstallCertificate, GetInstalledCertificateIds,
DeleteCertificate, ExtendedTriggerMessage).

Builders raise ValueError on what the schema forbids (a bug on our side or an operator's
typo, reported by the admin channel); parsers raise PayloadError naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpo_gateway.csms import fields
from cpo_gateway.csms.frames import ErrorCode

MAX_CSR = 5500
MAX_CHAIN = 10000
MAX_CERTIFICATE = 5500
CERTIFICATE_TYPES = frozenset({"CentralSystemRootCertificate", "ManufacturerRootCertificate"})
HASH_ALGORITHMS = frozenset({"SHA256", "SHA384", "SHA512"})
EXTENDED_TRIGGERS = frozenset(
    {
        "BootNotification",
        "LogStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "SignChargePointCertificate",
        "StatusNotification",
    }
)


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """A SecurityEventNotification as the charger sent it (type kept even if unknown)."""

    charge_point_id: str
    type: str
    timestamp: str
    tech_info: str | None


def parse_sign_certificate(cp_id: str, p: dict[str, object]) -> str:
    csr = fields.req_str(p, "SignCertificate", "csr")
    if len(csr) > MAX_CSR:
        fields.fail(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "SignCertificate",
            "csr",
            f"expected at most {MAX_CSR} characters, got {len(csr)}",
        )
    return csr


def parse_security_event(cp_id: str, p: dict[str, object]) -> SecurityEvent:
    path = "SecurityEventNotification"
    return SecurityEvent(
        charge_point_id=cp_id,
        type=fields.req_str(p, path, "type", 50),
        timestamp=fields.req_timestamp(p, path),
        tech_info=fields.opt_str(p, path, "techInfo", 255),
    )


def sign_certificate_conf(accepted: bool) -> dict[str, object]:
    return {"status": "Accepted" if accepted else "Rejected"}


def certificate_signed_req(chain_pem: str) -> dict[str, object]:
    if not chain_pem or len(chain_pem) > MAX_CHAIN:
        raise ValueError(f"certificateChain must be 1 to {MAX_CHAIN} characters")
    return {"certificateChain": chain_pem}


def install_certificate_req(certificate_type: str, certificate_pem: str) -> dict[str, object]:
    if certificate_type not in CERTIFICATE_TYPES:
        raise ValueError(
            f"certificateType must be one of {', '.join(sorted(CERTIFICATE_TYPES))}, "
            f"got {certificate_type!r}"
        )
    if (
        "-----BEGIN CERTIFICATE-----" not in certificate_pem
        or len(certificate_pem) > MAX_CERTIFICATE
    ):
        raise ValueError(
            f"certificate must be one PEM certificate of at most {MAX_CERTIFICATE} characters"
        )
    return {"certificateType": certificate_type, "certificate": certificate_pem}


def get_installed_certificate_ids_req(certificate_type: str) -> dict[str, object]:
    if certificate_type not in CERTIFICATE_TYPES:
        raise ValueError(
            f"certificateType must be one of {', '.join(sorted(CERTIFICATE_TYPES))}, "
            f"got {certificate_type!r}"
        )
    return {"certificateType": certificate_type}


def delete_certificate_req(
    hash_algorithm: str, issuer_name_hash: str, issuer_key_hash: str, serial_number: str
) -> dict[str, object]:
    """The certificateHashData of one certificate, as GetInstalledCertificateIds lists it."""
    if hash_algorithm not in HASH_ALGORITHMS:
        raise ValueError(
            f"hashAlgorithm must be one of SHA256, SHA384, SHA512, got {hash_algorithm!r}"
        )
    for name, value, most in (
        ("issuerNameHash", issuer_name_hash, 128),
        ("issuerKeyHash", issuer_key_hash, 128),
        ("serialNumber", serial_number, 40),
    ):
        if not value or len(value) > most:
            raise ValueError(f"{name} must be 1 to {most} characters")
    return {
        "certificateHashData": {
            "hashAlgorithm": hash_algorithm,
            "issuerNameHash": issuer_name_hash,
            "issuerKeyHash": issuer_key_hash,
            "serialNumber": serial_number,
        }
    }


def extended_trigger_req(
    requested_message: str, connector_id: int | None = None
) -> dict[str, object]:
    if requested_message not in EXTENDED_TRIGGERS:
        raise ValueError(
            f"requestedMessage must be one of {', '.join(sorted(EXTENDED_TRIGGERS))}, "
            f"got {requested_message!r}"
        )
    req: dict[str, object] = {"requestedMessage": requested_message}
    if connector_id is not None:
        req["connectorId"] = connector_id
    return req
