"""Certificate commands for a 2.0.1 charger: InstallCertificate, GetInstalledCertificateIds
and DeleteCertificate, sent by the same `charger command` CLI as for 1.6 (the gateway picks
the version of the charger's connection), their payloads fitting the OCA 2.0.1 schemas, and
a charger's refusal shown with its status and reason.

The charger is the `ocpp` library's v201 ChargePoint (it checks what it receives against
its own copy of the schemas), answering these calls from the certificates it holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from cpo_gateway.bridge.model import CommandResult, CommandStatus
from cpo_gateway.cli import build_parser
from cpo_gateway.csms import admin, v16_security
from cpo_gateway.csms import v201_security as sec
from cpo_gateway.csms.schemas import SchemaSet
from cpo_gateway.csms.v201_commands import read_command_status
from cpo_gateway.sim.pki import cert_pem, issue, make_ca
from tests.charger201 import Point, charger201
from tests.conftest import Harness

CP = "CP-BER-001"
V201 = SchemaSet.load("2.0.1")
ROOT, ROOT_KEY = make_ca("Operator Root")
PEM = cert_pem(ROOT).decode()


def hash_data(cert: x509.Certificate) -> dict[str, str]:
    """certificateHashData of a self-signed root (its issuer is itself), as a charger lists it."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "hash_algorithm": "SHA256",
        "issuer_name_hash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
        "issuer_key_hash": hashlib.sha256(spki).hexdigest(),
        "serial_number": format(cert.serial_number, "x"),
    }


class CertPoint(Point):
    """Installs CA certificates only (a leaf is Rejected, with statusInfo), lists them by
    type (NotFound when none), deletes one by its hash data (NotFound when unknown)."""

    installed: list[tuple[str, dict[str, str]]]

    @on(Action.install_certificate)
    async def on_install(self, certificate_type: str, certificate: str, **kw: Any) -> Any:
        self._record("InstallCertificate", certificate_type=certificate_type)
        cert = x509.load_pem_x509_certificate(certificate.encode())
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return call_result.InstallCertificate(
                status="Rejected",
                status_info={
                    "reason_code": "InvalidCertificate",
                    "additional_info": "not a CA certificate",
                },
            )
        self.installed.append((certificate_type, hash_data(cert)))
        return call_result.InstallCertificate(status="Accepted")

    @on(Action.get_installed_certificate_ids)
    async def on_list(self, certificate_type: list[str] | None = None, **kw: Any) -> Any:
        self._record("GetInstalledCertificateIds", certificate_type=certificate_type)
        chains = [
            {"certificate_type": kind, "certificate_hash_data": data}
            for kind, data in self.installed
            if certificate_type is None or kind in certificate_type
        ]
        if not chains:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(
            status="Accepted", certificate_hash_data_chain=chains
        )

    @on(Action.delete_certificate)
    async def on_delete(self, certificate_hash_data: dict[str, str], **kw: Any) -> Any:
        self._record("DeleteCertificate", **certificate_hash_data)
        kept = [(k, d) for k, d in self.installed if d != certificate_hash_data]
        if len(kept) == len(self.installed):
            return call_result.DeleteCertificate(status="NotFound")
        self.installed = kept
        return call_result.DeleteCertificate(status="Accepted")


class Cli:
    """`cpo-gateway charger -c CONFIG command CP ...` in a thread, its output captured."""

    def __init__(self, harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
        self._config = str(harness.gateway.config.path)
        self._capsys = capsys

    async def __call__(self, action: str, **fields: str) -> tuple[int, dict[str, Any], str]:
        argv = ["charger", "-c", self._config, "command", CP, action]
        for key, value in fields.items():
            argv += ["--arg", f"{key}={value}"]
        self._capsys.readouterr()
        args = build_parser().parse_args(argv)
        code = int(await asyncio.to_thread(args.fn, args))
        out = self._capsys.readouterr()
        return code, last_json(out.out), out.err


def last_json(out: str) -> dict[str, Any]:
    """The reply the CLI printed (indented JSON; the gateway's one-line logs share stdout)."""
    lines = out.splitlines()
    end = max(i for i, line in enumerate(lines) if line == "}")
    start = max(i for i, line in enumerate(lines[:end]) if line == "{")
    reply = json.loads("\n".join(lines[start : end + 1]))
    assert isinstance(reply, dict)
    return reply


async def test_install_list_delete_through_the_cli(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root_file = tmp_path / "root.pem"
    root_file.write_text(PEM, encoding="utf-8")
    cli = Cli(harness, capsys)
    async with charger201(harness.ocpp_url, CP, kind=CertPoint) as cp:
        assert isinstance(cp, CertPoint)
        cp.installed = []
        # The 1.6 name of the type, as an operator used to 1.6 chargers types it.
        code, reply, _ = await cli(
            "InstallCertificate",
            certificateType="CentralSystemRootCertificate",
            certificate=f"@{root_file}",
        )
        assert (code, reply["status"]) == (0, "accepted"), reply
        assert cp.installed == [("CSMSRootCertificate", hash_data(ROOT))]

        code, reply, _ = await cli("GetInstalledCertificateIds")  # no type: all of them
        assert (code, reply["status"]) == (0, "accepted"), reply
        (listed,) = reply["data"]["certificateHashData"]
        assert reply["data"]["certificateHashDataChain"][0]["certificateType"] == (
            "CSMSRootCertificate"
        )
        assert listed["serialNumber"] == format(ROOT.serial_number, "x")

        code, reply, _ = await cli("DeleteCertificate", **listed)
        assert (code, reply["status"]) == (0, "accepted"), reply
        assert cp.installed == []
        deleted = [kw for action, kw in cp.memory.commands if action == "DeleteCertificate"]
        assert deleted == [hash_data(ROOT)]


async def test_refusals_are_shown_with_the_chargers_reason(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf, _ = issue(ROOT, ROOT_KEY, "not-a-root")
    cli = Cli(harness, capsys)
    async with charger201(harness.ocpp_url, CP, kind=CertPoint) as cp:
        assert isinstance(cp, CertPoint)
        cp.installed = []
        code, reply, err = await cli(
            "InstallCertificate",
            certificateType="ManufacturerRootCertificate",
            certificate=cert_pem(leaf).decode(),
        )
        assert (code, reply["status"]) == (1, "rejected"), reply
        assert reply["data"]["statusInfo"] == {
            "reasonCode": "InvalidCertificate",
            "additionalInfo": "not a CA certificate",
        }
        assert "InstallCertificate to CP-BER-001: rejected" in err
        assert "Rejected (InvalidCertificate: not a CA certificate)" in err

        code, reply, err = await cli(
            "GetInstalledCertificateIds", certificateType="V2GRootCertificate"
        )
        assert (code, reply["status"], reply["detail"]) == (1, "rejected", "NotFound"), reply
        assert "GetInstalledCertificateIds to CP-BER-001: rejected: NotFound" in err

        gone = hash_data(ROOT)  # never installed here
        code, reply, err = await cli(
            "DeleteCertificate",
            hashAlgorithm=gone["hash_algorithm"],
            issuerNameHash=gone["issuer_name_hash"],
            issuerKeyHash=gone["issuer_key_hash"],
            serialNumber=gone["serial_number"],
        )
        assert (code, reply["detail"]) == (1, "NotFound"), reply
        assert "DeleteCertificate to CP-BER-001: rejected: NotFound" in err

        sent = len(cp.memory.commands)
        code, reply, err = await cli(
            "InstallCertificate", certificateType="SubCA", certificate=PEM
        )  # a type no version has: refused before anything is sent
        assert code == 64 and "certificateType must be one of" in err, err
        assert len(cp.memory.commands) == sent


async def test_a_1_6_charger_is_still_asked_for_one_type(harness: Harness) -> None:
    async with harness.charger(CP) as cp:
        await cp.connect()
        before = len(cp.received)
        for args in ({}, {"certificateType": "CentralSystemRootCertificate,V2GRootCertificate"}):
            request = {"charge_point": CP, "action": "GetInstalledCertificateIds", "args": args}
            answer = await admin.execute(harness.csms.registry, request)
            assert answer["status"] == "error" and "certificateType" in str(answer["detail"])
        assert len(cp.received) == before


# --- the payloads against the OCA 2.0.1 schemas -----------------------------------------------
HASH = ("SHA256", "a" * 64, "b" * 64, "3f2a")
COMMANDS = [
    ("InstallCertificate", sec.install_certificate_req("CSMSRootCertificate", PEM)),
    ("InstallCertificate", sec.install_certificate_req("CentralSystemRootCertificate", PEM)),
    ("InstallCertificate", sec.install_certificate_req("V2GRootCertificate", PEM)),
    ("GetInstalledCertificateIds", sec.get_installed_certificate_ids_req([])),
    (
        "GetInstalledCertificateIds",
        sec.get_installed_certificate_ids_req(
            ["V2GCertificateChain", "ManufacturerRootCertificate"]
        ),
    ),
    ("DeleteCertificate", sec.delete_certificate_req(*HASH)),
]


@pytest.mark.parametrize(("action", "payload"), COMMANDS)
def test_commands_fit_the_2_0_1_schema(action: str, payload: dict[str, object]) -> None:
    assert V201.check_call(action, payload) is None, payload


def test_the_1_6_forms_do_not_fit_2_0_1() -> None:
    # The check can fail: 1.6 names its types otherwise and asks for one, not a list.
    old = v16_security.install_certificate_req("CentralSystemRootCertificate", PEM)
    assert V201.check_call("InstallCertificate", old) is not None
    listed = v16_security.get_installed_certificate_ids_req("ManufacturerRootCertificate")
    assert V201.check_call("GetInstalledCertificateIds", listed) is not None


def test_builders_refuse_what_the_schema_forbids() -> None:
    with pytest.raises(ValueError, match="certificateType"):
        sec.install_certificate_req("ChargingStationCertificate", PEM)
    with pytest.raises(ValueError, match="PEM"):
        sec.install_certificate_req("CSMSRootCertificate", "not a certificate")
    with pytest.raises(ValueError, match="certificateType"):
        sec.get_installed_certificate_ids_req(["CSMSRootCertificate", "Nope"])
    assert sec.get_installed_certificate_ids_req(
        ["CentralSystemRootCertificate", "CSMSRootCertificate"]
    ) == {"certificateType": ["CSMSRootCertificate"]}


def test_answers_read_with_status_and_reason() -> None:
    failed = read_command_status(
        "DeleteCertificate",
        {"status": "Failed", "statusInfo": {"reasonCode": "InUse", "additionalInfo": "TLS"}},
    )
    assert (failed.status, failed.detail) == (CommandStatus.REJECTED, "Failed (InUse: TLS)")
    listed = read_command_status(
        "GetInstalledCertificateIds",
        {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": "CSMSRootCertificate", "certificateHashData": {"x": 1}},
                "junk",
                {"certificateType": "V2GRootCertificate"},
            ],
        },
    )
    assert listed.accepted and listed.data["certificateHashData"] == [{"x": 1}]
    chains = listed.data["certificateHashDataChain"]
    assert isinstance(chains, list) and len(chains) == 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELDS = st.sampled_from(["status", "statusInfo", "certificateHashDataChain", "reasonCode"])


@given(
    action=st.sampled_from(
        ["InstallCertificate", "GetInstalledCertificateIds", "DeleteCertificate"]
    ),
    payload=st.dictionaries(FIELDS | st.text(max_size=8), JSON, max_size=4),
)
def test_any_answer_reads_as_a_result_never_a_crash(
    action: str, payload: dict[str, object]
) -> None:
    result = read_command_status(action, payload)
    assert isinstance(result, CommandResult)
    if not isinstance(payload.get("status"), str):
        assert result.status is CommandStatus.FAILED
