"""Certificates and security events of connected chargers, for every OCPP version.

A charger's SignCertificate is answered at once from the signer's verdict (Accepted when the
CSR is signed, Rejected otherwise); the signed chain goes out in CertificateSigned after
that answer (`deliver`, which the server calls once the reply is sent). Both outcomes are
recorded, and an operator waiting in `ChargerRegistry.renew_certificate` (the CLI's
`charger upgrade-profile`) learns the charger's answer. SecurityEventNotification is stored.

The version-specific parts are only the payload builders: a 2.0.1 handler calls
`accept_csr` and `security_event` with the same values, and passes its own
CertificateSigned builder to `deliver`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cpo_gateway import logs
from cpo_gateway.bridge.model import CommandResult, CommandStatus
from cpo_gateway.bridge.storage import SecurityStore
from cpo_gateway.csms.certificates import CertificateSigner, CsrRejected, SignedCertificate
from cpo_gateway.csms.connected import ChargerRegistry
from cpo_gateway.csms.v16_security import SecurityEvent, certificate_signed_req

log = logs.get(__name__)
ChainRequest = Callable[[str], dict[str, object]]  # chain PEM -> CertificateSigned payload


class CertificateService:
    def __init__(
        self,
        registry: ChargerRegistry,
        records: SecurityStore | None,
        signer: CertificateSigner | None,
        *,
        known: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`known`: whether a charge point id is in the stations file (the core's)."""
        self._registry = registry
        self._known = known
        self._records = records
        self._signer = signer
        self._clock = clock
        self._to_send: dict[str, SignedCertificate] = {}

    async def accept_csr(self, charge_point_id: str, csr_pem: str) -> bool:
        """Sign the CSR now; True (answer Accepted) when there is a chain to deliver.

        Only for chargers of the stations file: one let in by allow_unknown_chargers has
        shown no credential, and a certificate for the id it chose would let it in as that
        charger once the operator adds it with security_profile = 3."""
        if not self._known(charge_point_id):
            log.warning(
                "security.csr_rejected",
                charge_point_id=charge_point_id,
                reason="not a charger of the stations file",
            )
            self._registry.certificate_outcome(
                charge_point_id,
                CommandResult(CommandStatus.REJECTED, "not a charger of the stations file"),
            )
            return False
        if self._signer is None:
            log.warning(
                "security.csr_rejected",
                charge_point_id=charge_point_id,
                reason="no [ocpp.tls] signing_ca_cert / signing_ca_key configured",
            )
            self._registry.certificate_outcome(
                charge_point_id, CommandResult(CommandStatus.REJECTED, "no signing CA configured")
            )
            return False
        try:
            signed = self._signer.sign(csr_pem, charge_point_id)
        except CsrRejected as exc:
            log.warning("security.csr_rejected", charge_point_id=charge_point_id, reason=str(exc))
            self._registry.certificate_outcome(
                charge_point_id, CommandResult(CommandStatus.REJECTED, f"CSR refused: {exc}")
            )
            return False
        self._to_send[charge_point_id] = signed
        log.info(
            "security.csr_signed",
            charge_point_id=charge_point_id,
            serial=format(signed.serial, "x"),
            not_after=signed.not_after.isoformat(),
        )
        return True

    async def deliver(
        self, charge_point_id: str, build: ChainRequest = certificate_signed_req
    ) -> CommandResult | None:
        """Send the chain signed for this charger (after SignCertificate was answered)."""
        signed = self._to_send.pop(charge_point_id, None)
        if signed is None:
            return None
        result = await self._registry.command(
            charge_point_id, "CertificateSigned", build(signed.chain_pem)
        )
        if self._records is not None:
            await self._records.record_certificate(
                charge_point_id,
                format(signed.serial, "x"),
                signed.sha256,
                signed.not_after.isoformat(),
                result.status.value,
                self._clock(),
            )
        log.info(
            "security.certificate_signed",
            charge_point_id=charge_point_id,
            serial=format(signed.serial, "x"),
            result=result.status.value,
        )
        self._registry.certificate_outcome(charge_point_id, result)
        return result

    async def security_event(self, event: SecurityEvent) -> None:
        """Store first (the answer waits for it), then log."""
        if self._records is not None:
            await self._records.record_security_event(
                event.charge_point_id, event.type, event.timestamp, event.tech_info, self._clock()
            )
        log.warning(
            "security.charger_event",
            charge_point_id=event.charge_point_id,
            type=event.type,
            timestamp=event.timestamp,
            tech_info=event.tech_info,
        )
