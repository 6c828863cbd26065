"""The operator CA that signs charger CSRs: a sub-CA (CertificateSigned then carries leaf +
sub-CA, and the charger comes back on profile 3 with that chain), and an encrypted signing
key whose passphrase comes from a credential file or the environment; a wrong or missing
passphrase stops `check-config` and `run` at the config load, with one line naming the key."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ocpp.v16 import call

from cpo_gateway.config import SIGNING_KEY_PASSPHRASE_ENV, load_config
from cpo_gateway.csms.certificates import CertificateSigner
from cpo_gateway.csms.clientcert import ClientCertPolicy
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.pki import Key, SimPki, cert_pem, key_pem, make_ca, make_sub_ca, new_key
from cpo_gateway.tomlcheck import ConfigError
from tests.conftest import write_config
from tests.test_csms_certificates import CP, ORG, charger_stations, csr_for, lib_charger
from tests.test_csms_support import config, eventually, running

PASSPHRASE = b"correct horse, battery staple"  # spaces and a comma: kept as written


def encrypted_pem(key: Key, passphrase: bytes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


class SigningFiles:
    """A sub-CA under SimPki's root signs; its key encrypted, its passphrase in a file."""

    def __init__(self, pki: SimPki, directory: Path) -> None:
        self.pki = pki
        self.sub, self.sub_key = make_sub_ca(pki.ca_cert, pki.ca_key, "Signing sub-CA", ORG)
        self.cert = directory / "signing-ca.pem"
        self.cert.write_bytes(cert_pem(self.sub))
        self.key = directory / "signing-ca.key"
        self.key.write_bytes(encrypted_pem(self.sub_key, PASSPHRASE))
        self.passphrase = directory / "signing-ca.passphrase"
        self.passphrase.write_bytes(PASSPHRASE + b"\n")

    def tls(self, *, passphrase_file: str | None = None) -> str:
        pki = self.pki
        lines = [
            "[ocpp.tls]",
            f'cert_file = "{pki.server.cert}"',
            f'key_file = "{pki.server.key}"',
            f'client_ca_file = "{pki.ca.cert}"',
            f'organization = "{ORG}"',
            f'signing_ca_cert = "{self.cert}"',
            f'signing_ca_key = "{self.key}"',
        ]
        if passphrase_file is not None:
            lines.append(f'signing_ca_key_passphrase_file = "{passphrase_file}"')
        return "\n".join(lines) + "\n"


@pytest.fixture
def files(tmp_path: Path) -> SigningFiles:
    return SigningFiles(SimPki(tmp_path / "pki", ORG), tmp_path)


async def test_a_sub_ca_signs_and_the_charger_returns_on_profile_3_with_the_chain(
    tmp_path: Path, emp: SandboxEmp, files: SigningFiles
) -> None:
    pki = files.pki
    extra = files.tls(passphrase_file=str(files.passphrase))
    cfg = config(tmp_path, emp, stations=charger_stations(tmp_path, 2), extra=extra)
    async with running(cfg, emp) as h:
        url = f"wss://127.0.0.1:{h.csms.port}{cfg.ocpp.path}"
        cp, ws = await lib_charger(url, pki.client_context(), CP)
        reader = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            result = await h.csms.registry.renew_certificate(CP, 10)
            await eventually(lambda: cp.chains)
        finally:
            await ws.close()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert result.status.value == "accepted", result
    leaf, *chain = x509.load_pem_x509_certificates(cp.chains[0].encode())
    assert chain == [files.sub]  # leaf first, then the sub-CA: the chain up to the root
    assert leaf.issuer == files.sub.subject
    assert leaf.not_valid_after_utc <= files.sub.not_valid_after_utc
    der = leaf.public_bytes(serialization.Encoding.DER)
    sub_der = files.sub.public_bytes(serialization.Encoding.DER)
    assert ClientCertPolicy([pki.ca_cert], ORG).check(der, CP, [sub_der]) is None
    assert ClientCertPolicy([pki.ca_cert], ORG).check(der, CP) is not None  # needs the sub-CA

    # Profile 3 now, with only the root trusted: the charger presents what it was sent.
    (tmp_path / "cert.pem").write_text(cp.chains[0])
    (tmp_path / "cert.key").write_bytes(key_pem(cp.key))
    ctx = pki.client_context()
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "cert.key")
    (tmp_path / "p3").mkdir()
    cfg3 = config(tmp_path / "p3", emp, stations=charger_stations(tmp_path, 3), extra=extra)
    async with running(cfg3, emp) as h:
        url3 = f"wss://127.0.0.1:{h.csms.port}{cfg3.ocpp.path}"
        async with SimCharger(CP, url3, ssl=ctx, call_timeout=10) as sim:
            await sim.connect()
            assert sim.boot_status == "Accepted"


def test_the_passphrase_comes_from_a_credential_file_or_the_environment(
    tmp_path: Path, files: SigningFiles
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "ca-passphrase").write_bytes(PASSPHRASE + b"\r\n")
    extra = files.tls(passphrase_file="$CREDENTIALS_DIRECTORY/ca-passphrase")
    path = write_config(tmp_path, extra=extra)
    certs = load_config(path, {"CREDENTIALS_DIRECTORY": str(creds)}).ocpp.client_certs
    assert certs.signing_ca_key_passphrase == PASSPHRASE
    assert PASSPHRASE.decode() not in repr(certs)
    # Without the variable set, the error says so (and how to check by hand).
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert "ocpp.tls.signing_ca_key_passphrase_file: expected a path whose variables are set" in (
        str(info.value)
    )
    (tmp_path / "env").mkdir()
    from_env = write_config(tmp_path / "env", extra=files.tls())
    env = {SIGNING_KEY_PASSPHRASE_ENV: PASSPHRASE.decode()}
    certs = load_config(from_env, env).ocpp.client_certs
    signer = CertificateSigner.from_files(
        files.cert, files.key, ORG, passphrase=certs.signing_ca_key_passphrase
    )
    signed = signer.sign(csr_for(new_key(), CP), CP)
    assert x509.load_pem_x509_certificates(signed.chain_pem.encode())[1] == files.sub


def test_check_config_reports_the_signer(tmp_path: Path, files: SigningFiles) -> None:
    path = write_config(tmp_path, extra=files.tls(passphrase_file=str(files.passphrase)))
    run = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "CSR signer: CN=Signing sub-CA,O=Example CPO; encrypted key, passphrase verified" in (
        run.stdout
    )
    assert PASSPHRASE.decode() not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("case", "line"),
    [
        (
            "wrong passphrase",
            "ocpp.tls.signing_ca_key_passphrase_file: expected the passphrase of "
            "signing_ca_key, found it does not decrypt",
        ),
        (
            "no passphrase",
            "ocpp.tls.signing_ca_key: expected a key the gateway can decrypt, found",
        ),
        (
            "key not encrypted",
            "ocpp.tls.signing_ca_key_passphrase_file: expected an encrypted signing_ca_key",
        ),
        (
            "empty passphrase file",
            "ocpp.tls.signing_ca_key_passphrase_file: expected a file holding the passphrase",
        ),
        (
            "chain in the wrong order",
            "ocpp.tls.signing_ca_cert: expected the signing CA first, then each CA above it",
        ),
    ],
)
def test_check_config_refuses_a_signing_key_it_cannot_use(
    tmp_path: Path, files: SigningFiles, case: str, line: str
) -> None:
    if case == "wrong passphrase":
        files.passphrase.write_bytes(b"not the passphrase\n")
    elif case == "key not encrypted":
        files.key.write_bytes(key_pem(files.sub_key))
    elif case == "empty passphrase file":
        files.passphrase.write_bytes(b"\n")
    elif case == "chain in the wrong order":
        stranger, _ = make_ca("Not its issuer", ORG)
        files.cert.write_bytes(cert_pem(files.sub) + cert_pem(stranger))
    given = None if case == "no passphrase" else str(files.passphrase)
    path = write_config(tmp_path, extra=files.tls(passphrase_file=given))
    run = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 78, run.stderr
    assert line in run.stderr, run.stderr
    named = [x for x in run.stderr.splitlines() if "ocpp.tls.signing_ca" in x]
    assert len(named) == 1, run.stderr  # one clear line, not a traceback
    assert "Traceback" not in run.stderr
