"""Certificate management over OCPP 1.6 (security extension): a profile-2 charger asked for a
CSR, the gateway signing it with the operator CA, CertificateSigned accepted, the charger
back on profile 3 with its new certificate; security events stored and shown by the CLI.

The charger here is the `ocpp` library's own v16 ChargePoint (code we did not write)."""

from __future__ import annotations

import asyncio
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, CertificateSignedStatus, TriggerMessageStatus
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as call_result201
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from cpo_gateway.csms.certificates import CertificateSigner, CsrRejected
from cpo_gateway.csms.clientcert import ClientCertPolicy
from cpo_gateway.csms.passwords import hash_password
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import Key, SimPki, key_pem, make_ca, name, new_key
from tests.conftest import examples
from tests.test_csms_support import OCPP16, basic, config, eventually, running, stations_with

CP = "CP-MUC-DC1"
ORG = "Example CPO"
PASSWORD = "correct-horse-battery-staple"
TS = "2024-05-01T10:15:00Z"


def csr_for(key: Key, cn: str, org: str | None = ORG) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name(cn, org))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


class LibCharger(ChargePoint):
    """Answers ExtendedTriggerMessage SignChargePointCertificate with a CSR for `cn`."""

    def __init__(self, cp_id: str, ws: Any, cn: str) -> None:
        super().__init__(cp_id, ws)
        self.key = new_key()
        self.cn = cn
        self.chains: list[str] = []
        self.csr_answers: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @on(Action.extended_trigger_message)
    def on_trigger(self, requested_message: str, **_: Any) -> Any:
        if requested_message == "SignChargePointCertificate":
            task = asyncio.get_running_loop().create_task(self.send_csr())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return call_result.ExtendedTriggerMessage(status=TriggerMessageStatus.accepted)

    async def send_csr(self) -> None:
        await asyncio.sleep(0.05)  # after our answer to the trigger has gone out
        answer = await self.call(call.SignCertificate(csr=csr_for(self.key, self.cn)))
        self.csr_answers.append(str(answer.status))

    @on(Action.certificate_signed)
    def on_signed(self, certificate_chain: str, **_: Any) -> Any:
        self.chains.append(certificate_chain)
        return call_result.CertificateSigned(status=CertificateSignedStatus.accepted)


async def run_cli(*argv: str) -> tuple[int, str]:
    """The CLI in its own process, as an operator runs it beside the gateway."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpo_gateway", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode()


def tls_extra(pki: SimPki) -> str:
    return (
        "[ocpp.tls]\n"
        f'cert_file = "{pki.server.cert}"\nkey_file = "{pki.server.key}"\n'
        f'client_ca_file = "{pki.ca.cert}"\norganization = "{ORG}"\n'
        f'signing_ca_cert = "{pki.ca.cert}"\nsigning_ca_key = "{pki.ca.key}"\n'
    )


def charger_stations(tmp_path: Path, profile: int) -> Path:
    return stations_with(
        tmp_path,
        f'[[charger]]\nid = "{CP}"\nsecurity_profile = {profile}\n'
        f'password_hash = "{hash_password(PASSWORD)}"\n',
    )


async def lib_charger(url: str, ctx: ssl.SSLContext, cn: str) -> tuple[LibCharger, Any]:
    ws = await connect(
        f"{url}/{CP}",
        subprotocols=[OCPP16],
        ssl=ctx,
        additional_headers={"Authorization": basic(CP, PASSWORD)},
        open_timeout=5,
    )
    cp = LibCharger(CP, ws, cn)
    return cp, ws


async def test_profile_2_charger_gets_a_certificate_and_comes_back_on_profile_3(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    pki = SimPki(tmp_path / "pki", ORG)
    cfg = config(tmp_path, emp, stations=charger_stations(tmp_path, 2), extra=tls_extra(pki))
    async with running(cfg, emp) as h:
        url = f"wss://127.0.0.1:{h.csms.port}{cfg.ocpp.path}"
        cp, ws = await lib_charger(url, pki.client_context(), CP)
        reader = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            await cp.call(
                call.SecurityEventNotification(
                    type="FirmwareUpdated", timestamp=TS, tech_info="1.2"
                )
            )
            args = ["charger", "upgrade-profile", CP, "-c", str(cfg.path), "--timeout", "20"]
            code, out = await run_cli(*args)
        finally:
            await ws.close()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert code == 0, out
    assert "set security_profile = 3" in out and "key=SecurityProfile --arg value=3" in out
    assert cp.csr_answers == ["Accepted"]
    assert len(cp.chains) == 1
    leaf = x509.load_pem_x509_certificates(cp.chains[0].encode())[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CP
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ORG
    assert leaf.public_key() == cp.key.public_key()
    assert (
        ClientCertPolicy([pki.ca_cert], ORG).check(
            leaf.public_bytes(serialization.Encoding.DER), CP
        )
        is None
    )

    # The operator sets security_profile = 3; the charger reconnects with its new certificate.
    (tmp_path / "cert.pem").write_text(cp.chains[0])
    (tmp_path / "cert.key").write_bytes(key_pem(cp.key))
    ctx = pki.client_context()
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "cert.key")
    cfg3 = config(tmp_path, emp, stations=charger_stations(tmp_path, 3), extra=tls_extra(pki))
    async with running(cfg3, emp) as h:
        url3 = f"wss://127.0.0.1:{h.csms.port}{cfg3.ocpp.path}"
        async with SimCharger(CP, url3, ssl=ctx, call_timeout=10) as sim:
            await sim.connect()
            assert sim.boot_status == "Accepted"
    code, shown = await run_cli("charger", "security-events", CP, "-c", str(cfg.path))
    assert code == 0, shown
    assert "FirmwareUpdated" in shown and "1.2" in shown
    assert format(leaf.serial_number, "x") in shown and "accepted" in shown


async def test_a_csr_for_another_charger_is_rejected(tmp_path: Path, emp: SandboxEmp) -> None:
    pki = SimPki(tmp_path / "pki", ORG)
    cfg = config(tmp_path, emp, stations=charger_stations(tmp_path, 2), extra=tls_extra(pki))
    async with running(cfg, emp) as h:
        url = f"wss://127.0.0.1:{h.csms.port}{cfg.ocpp.path}"
        cp, ws = await lib_charger(url, pki.client_context(), "CP-BER-001")
        reader = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            result = await h.csms.registry.renew_certificate(CP, 10)
            await eventually(lambda: cp.csr_answers)  # the answer follows the verdict
        finally:
            await ws.close()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert cp.csr_answers == ["Rejected"]
    assert cp.chains == []
    assert result.status.value == "rejected" and "subject CN" in result.detail


def test_signer_checks_names_keys_and_signature() -> None:
    ca, ca_key = make_ca("Operator CA", ORG)
    signer = CertificateSigner(ca, ca_key, ORG)
    key = new_key()
    signed = signer.sign(csr_for(key, "CP-1"), "CP-1")
    leaf = x509.load_pem_x509_certificates(signed.chain_pem.encode())[0]
    assert leaf.issuer == ca.subject and leaf.not_valid_after_utc > datetime.now(UTC)
    leaf.verify_directly_issued_by(ca)
    with pytest.raises(CsrRejected, match="subject CN"):
        signer.sign(csr_for(key, "CP-2"), "CP-1")
    with pytest.raises(CsrRejected, match="subject O"):
        signer.sign(csr_for(key, "CP-1", "Other"), "CP-1")
    with pytest.raises(CsrRejected, match="not a PEM"):
        signer.sign(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----", "CP-1"
        )


SIGNER = CertificateSigner(*make_ca("Property CA", ORG), ORG)


@given(st.text(max_size=2000))
@settings(max_examples=examples(200))
def test_any_csr_text_is_signed_or_rejected_never_a_crash(text: str) -> None:
    try:
        SIGNER.sign(text, "CP-1")
    except CsrRejected as exc:
        assert str(exc)
    else:
        pytest.fail("random text is never a valid CSR")


class LibCharger201(ChargePoint201):
    """The library's 2.0.1 charging station: a CSR on TriggerMessage."""

    def __init__(self, cp_id: str, ws: Any) -> None:
        super().__init__(cp_id, ws)
        self.key = new_key()
        self.chains: list[str] = []
        self.csr_answers: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @on("TriggerMessage")
    def on_trigger(self, requested_message: str, **_: Any) -> Any:
        if requested_message == "SignChargingStationCertificate":
            task = asyncio.get_running_loop().create_task(self.send_csr())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return call_result201.TriggerMessage(status="Accepted")

    async def send_csr(self) -> None:
        await asyncio.sleep(0.05)
        request = call201.SignCertificate(
            csr=csr_for(self.key, self.id), certificate_type="ChargingStationCertificate"
        )
        self.csr_answers.append(str((await self.call(request)).status))

    @on("CertificateSigned")
    def on_signed(self, certificate_chain: str, **_: Any) -> Any:
        self.chains.append(certificate_chain)
        return call_result201.CertificateSigned(status="Accepted")


async def test_a_2_0_1_charger_gets_a_certificate_and_its_events_are_stored(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    pki = SimPki(tmp_path / "pki", ORG)
    cfg = config(tmp_path, emp, stations=charger_stations(tmp_path, 2), extra=tls_extra(pki))
    async with running(cfg, emp) as h:
        url = f"wss://127.0.0.1:{h.csms.port}{cfg.ocpp.path}"
        ws = await connect(
            f"{url}/{CP}",
            subprotocols=[Subprotocol("ocpp2.0.1")],
            ssl=pki.client_context(),
            additional_headers={"Authorization": basic(CP, PASSWORD)},
            open_timeout=5,
        )
        cp = LibCharger201(CP, ws)
        reader = asyncio.create_task(cp.start())
        try:
            station = {"model": "M", "vendor_name": "V"}
            await cp.call(call201.BootNotification(charging_station=station, reason="PowerUp"))
            await cp.call(
                call201.SecurityEventNotification(type="TamperDetectionActivated", timestamp=TS)
            )
            result = await h.csms.registry.renew_certificate(CP, 10)
            events = await h.store.security_events(CP)
            issued = await h.store.issued_certificates(CP)
        finally:
            await ws.close()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert result.status.value == "accepted", result
    assert cp.csr_answers == ["Accepted"] and len(cp.chains) == 1
    leaf = x509.load_pem_x509_certificates(cp.chains[0].encode())[0]
    assert leaf.public_key() == cp.key.public_key()
    assert [e.type for e in events] == ["TamperDetectionActivated"]
    assert [c.status for c in issued] == ["accepted"]


async def test_a_charger_not_in_the_stations_file_gets_no_certificate(
    tmp_path: Path, emp: SandboxEmp
) -> None:
    """With allow_unknown_chargers a stranger connects (Pending, no credential); a certificate
    signed for the id it chose would let it in as that charger once the operator adds it
    with security_profile = 3."""
    pki = SimPki(tmp_path / "pki", ORG)
    stranger = "CP-NOT-YET-1"
    cfg = config(tmp_path, emp, ocpp="allow_unknown_chargers = true", extra=tls_extra(pki))
    async with running(cfg, emp) as h:
        url = f"wss://127.0.0.1:{h.csms.port}{cfg.ocpp.path}/{stranger}"
        async with connect(
            url, subprotocols=[OCPP16], ssl=pki.client_context(), open_timeout=5
        ) as ws:
            cp = LibCharger(stranger, ws, stranger)
            reader = asyncio.create_task(cp.start())
            try:
                boot = await cp.call(
                    call.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                answer = await cp.call(call.SignCertificate(csr=csr_for(cp.key, stranger)))
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        assert boot.status == "Pending"
        assert answer.status == "Rejected"
        assert cp.chains == []
        issued = await h.store.db.all("SELECT * FROM issued_certificates")
        assert issued == []
