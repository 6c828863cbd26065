"""The installed tree run exactly as the unit runs it: working directory /, STATE_DIRECTORY and
CREDENTIALS_DIRECTORY set, an unprivileged user, `check-config` (ExecStartPre) then `run`.

There is no systemd as PID 1 on the machines this suite runs on (CI included), so the unit's
environment is reproduced here instead; `tests/test_install.py` verifies the unit file itself.
Also: the key files the README tells an operator to write, usage errors, and bad TLS files.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpo_gateway.config import ConfigError, load_config
from tests.conftest import ROOT, write_config
from tests.test_install import _NOT_PROJECT

NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")


def service_python() -> tuple[str, bool]:
    """The interpreter a Debian host installs with, and whether the gateway can run as an
    unprivileged user from a venv made of it (the suite's own Python may live under /root)."""
    if SYSTEM_PYTHON.exists():
        probe = subprocess.run(
            [str(SYSTEM_PYTHON), "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            return str(SYSTEM_PYTHON), os.geteuid() == 0
    return sys.executable, False


PYTHON, DROP_PRIVILEGES = service_python()


@dataclass(frozen=True)
class Installed:
    top: Path
    prefix: Path
    etc: Path
    install_log: str

    @property
    def exe(self) -> str:
        return str(self.prefix / "bin" / "cpo-gateway")


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    # Not under pytest's tmp_path (mode 0700): the unprivileged user must read the venv.
    top = Path(tempfile.mkdtemp(prefix="cpo-gateway-install-", dir="/tmp"))
    try:
        top.chmod(0o755)
        project = top / "project"
        shutil.copytree(ROOT, project, ignore=_NOT_PROJECT, symlinks=True)
        # A checkout that has run the gateway: its live state must not reach the build.
        (project / "var").mkdir()
        (project / "var" / "gateway.db").write_bytes(b"SQLite format 3\x00")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(project / "var" / "admin.sock"))
        prefix, etc = top / "opt" / "cpo-gateway", top / "etc" / "cpo-gateway"
        proc = subprocess.run(
            [str(project / "scripts" / "install"), "--prefix", str(prefix), "--etc", str(etc),
             "--unit-dir", str(top / "units"), "--no-systemctl"],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "PYTHON": PYTHON},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield Installed(top, prefix, etc, proc.stdout + proc.stderr)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_the_unit(
    inst: Installed, state: Path, creds: Path, *args: str, **kw: object
) -> subprocess.Popen[str]:
    """The gateway as systemd starts it: cwd /, its directories in the environment, no
    privileges (where the tests run as root to drop them)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "STATE_DIRECTORY": str(state),
        "CREDENTIALS_DIRECTORY": str(creds),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if DROP_PRIVILEGES else {}
    return subprocess.Popen(
        [inst.exe, *args, "-c", str(inst.etc / "gateway.toml")],
        cwd="/", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **user, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


def service_dirs(inst: Installed, name: str) -> tuple[Path, Path]:
    """A state directory owned by the service's user and a credentials directory holding the
    key files written with the README's command (systemd hands the service readable copies)."""
    state, creds = inst.top / f"{name}-state", inst.top / f"{name}-creds"
    state.mkdir(mode=0o700)
    creds.mkdir(mode=0o755)
    for key in ("emp-api-key", "emp-inbound-api-key", "admin-token"):
        wrote = subprocess.run(
            [inst.exe, "credential", "write", str(creds / key)],
            input=f"{name}-{key}-0001\n", capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert wrote.returncode == 0, wrote.stderr
        assert (creds / key).stat().st_mode & 0o777 == 0o600
        (creds / key).chmod(0o644)  # as systemd's copy, readable by the service's user
    if DROP_PRIVILEGES:
        os.chown(state, NOBODY, NOBODY)
    return state, creds


def test_the_installed_config_passes_check_config_and_runs_as_the_unit(
    installed: Installed,
) -> None:
    config = installed.etc / "gateway.toml"
    text = config.read_text()
    # The service's copy: the installed stations file, state and keys from systemd.
    assert 'stations_file = "stations.toml"' in text
    assert 'api_key_file = "$CREDENTIALS_DIRECTORY/emp-api-key"' in text
    assert "sandbox-outbound-key" not in text and 'state_dir = "./var"' not in text
    assert 'token_file = "$CREDENTIALS_DIRECTORY/admin-token"' in text
    # What an operator edits first (step 1 of the README): addresses and ports.
    ocpp_port, oioi_port, admin_port = free_port(), free_port(), free_port()
    text = text.replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
    text = text.replace("port = 9000", f"port = {ocpp_port}").replace(
        "port = 8080", f"port = {oioi_port}"
    )
    text = text.replace("port = 8090", f"port = {admin_port}")
    config.write_text(text)
    state, creds = service_dirs(installed, "unit")

    check = as_the_unit(installed, state, creds, "check-config")
    out, err = check.communicate(timeout=60)
    assert check.returncode == 0, err
    assert out.startswith("ok: ") and f"state:      {state}/gateway.db" in out

    gateway = as_the_unit(installed, state, creds, "run")
    try:
        health = None
        for _ in range(300):
            if gateway.poll() is not None:
                break
            try:
                url = f"http://127.0.0.1:{oioi_port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
                    health = json.loads(resp.read())
                break
            except OSError:
                time.sleep(0.1)
        assert health is not None, gateway.communicate(timeout=10)
        assert health["status"] == "ok" and health["db"] == "open"
        # The operator logs into the console with the token the README has them write.
        token = (creds / "admin-token").read_text()
        assert console_login(admin_port, token) == 200
        gateway.send_signal(signal.SIGTERM)
        _, err = gateway.communicate(timeout=60)
        assert gateway.returncode == 0, err
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.communicate(timeout=10)
    db = state / "gateway.db"
    assert db.exists()
    if DROP_PRIVILEGES:
        assert db.stat().st_uid == NOBODY


def console_login(port: int, token: str) -> int:
    """Log in as a browser does (the form's nonce cookie and field, then the token); the status
    of the chargers page it lands on."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    with opener.open(f"{base}/login", timeout=10) as resp:
        form = resp.read().decode()
    found = re.search(r'name="nonce" value="([^"]+)"', form)
    assert found is not None, form[:500]
    data = urllib.parse.urlencode(
        {"name": "ops", "password": token, "nonce": found.group(1), "next": "/chargers"}
    ).encode()
    with opener.open(f"{base}/login", data=data, timeout=10) as resp:
        page = resp.read().decode()
        assert "Chargers" in page and "Log out" in page, page[:500]
        return int(resp.status)


def test_the_build_copy_leaves_the_checkouts_state_behind(installed: Installed) -> None:
    assert "socket ignored" not in installed.install_log
    site = list((installed.prefix / "lib").glob("python3*/site-packages"))
    assert site and not list(site[0].rglob("gateway.db")), "a checkout's database was installed"


def test_a_missing_credential_fails_with_one_line(installed: Installed) -> None:
    state, creds = service_dirs(installed, "missing")
    (creds / "emp-api-key").unlink()
    check = as_the_unit(installed, state, creds, "check-config")
    _, err = check.communicate(timeout=60)
    assert check.returncode == 78
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1 and "emp[0].api_key_file" in problems[0]
    assert f"{creds}/emp-api-key (No such file or directory)" in problems[0]


def test_credentials_directory_unset_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, emps="")
    path.write_text(
        path.read_text()
        + """
[[emp]]
name = "sandbox"
url = "http://127.0.0.1:9/api/v4/request"
api_key_file = "$CREDENTIALS_DIRECTORY/emp-api-key"
inbound_api_key = "inbound-key-0001"
partner_identifier = "test-partner-identifier-0001"
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    (problem,) = info.value.problems
    assert "emp[0].api_key_file" in problem and "CREDENTIALS_DIRECTORY not set" in problem
    assert "CREDENTIALS_DIRECTORY=/etc/cpo-gateway/credentials cpo-gateway check-config" in problem


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cpo_gateway", *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_credential_write_refuses_an_empty_key_and_writes_0600(tmp_path: Path) -> None:
    target = tmp_path / "emp-api-key"
    empty = cli("credential", "write", str(target), stdin="\n")
    assert empty.returncode == 64 and "empty key" in empty.stderr
    assert not target.exists()
    wrote = cli("credential", "write", str(target), stdin="s3cret-key-0001\n")
    assert wrote.returncode == 0, wrote.stderr
    assert target.read_bytes() == b"s3cret-key-0001"
    assert target.stat().st_mode & 0o777 == 0o600
    readme = (ROOT / "README.md").read_text()
    assert "read -rs" not in readme and "read -s" not in readme
    assert "cpo-gateway credential write /etc/cpo-gateway/credentials/emp-api-key" in readme


@pytest.mark.parametrize(
    "args", [["--frobnicate"], ["whitelist"], ["outbox", "retry", "x"], ["nonsense"]]
)
def test_usage_errors_exit_64(args: list[str]) -> None:
    proc = cli(*args)
    assert proc.returncode == 64, proc.stderr
    assert "usage:" in proc.stderr and "error:" in proc.stderr


def make_pair(
    directory: Path, *, valid_days: tuple[int, int] = (-1, 30), name: str = "server"
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid_days[0]))
        .not_valid_after(now + dt.timedelta(days=valid_days[1]))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def tls_problems(tmp_path: Path, cert: Path, key: Path) -> list[str]:
    path = write_config(tmp_path, extra=f'[ocpp.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n')
    try:
        load_config(path, {})
    except ConfigError as exc:
        return exc.problems
    return []


def test_tls_files_are_checked_at_config_load(tmp_path: Path) -> None:
    cert, key = make_pair(tmp_path)
    assert tls_problems(tmp_path, cert, key) == []
    (missing,) = tls_problems(tmp_path, tmp_path / "nope.crt", key)
    assert "ocpp.tls.cert_file: expected a readable PEM file" in missing
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("this is not a certificate\n")
    (not_pem,) = tls_problems(tmp_path, garbage, key)
    assert "ocpp.tls.cert_file: expected a PEM certificate" in not_pem
    _, other_key = make_pair(tmp_path, name="other")
    (mismatch,) = tls_problems(tmp_path, cert, other_key)
    assert "ocpp.tls.key_file: expected the private key of cert_file" in mismatch
    old_cert, old_key = make_pair(tmp_path, valid_days=(-30, -1), name="old")
    (expired,) = tls_problems(tmp_path, old_cert, old_key)
    assert "ocpp.tls.cert_file: expected a certificate valid now, found expired on" in expired


def test_check_config_exits_78_on_bad_tls_without_a_traceback(tmp_path: Path) -> None:
    cert, _ = make_pair(tmp_path)
    _, other_key = make_pair(tmp_path, name="other")
    path = write_config(
        tmp_path, extra=f'[ocpp.tls]\ncert_file = "{cert}"\nkey_file = "{other_key}"\n'
    )
    for command in ("check-config", "run"):
        proc = cli(command, "-c", str(path))
        assert proc.returncode == 78, proc.stderr
        assert "ocpp.tls.key_file" in proc.stderr and "Traceback" not in proc.stderr
        assert "ok:" not in proc.stdout
