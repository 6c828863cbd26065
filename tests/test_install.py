"""The service installer (scripts/install) and the systemd unit it installs.

The installer runs from a copy of the project in tmp_path, so the tests never touch the checkout
and work before config/*.example.toml exist (throwaway examples are written into the copy).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT_NAME = "cpo-gateway.service"
UNIT = ROOT / "systemd" / UNIT_NAME
DEFAULT_PREFIX = "/opt/cpo-gateway"
DEFAULT_ETC = "/etc/cpo-gateway"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# The gateway's default shutdown_grace_s: systemd must wait longer before SIGKILL.
DEFAULT_GRACE_S = 20

_NOT_PROJECT = shutil.ignore_patterns(
    ".venv", ".git", "tests", "build", "dist", "var", "*.egg-info", "__pycache__",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis",
)  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    src = tmp_path / "project"
    shutil.copytree(ROOT, src, ignore=_NOT_PROJECT, symlinks=True)
    examples = {
        "gateway.example.toml": "# throwaway gateway config for the installer tests\n",
        "stations.example.toml": "# throwaway stations file for the installer tests\n",
    }
    for name, text in examples.items():
        path = src / "config" / name
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    return src


def install(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # The interpreter running the tests is >= 3.11 by the project's own requirement.
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        [str(project / "scripts" / "install"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def snapshot(top: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under top with its mode and, for files, its content."""
    if not top.exists():
        return {}
    out: dict[str, tuple[int, bytes]] = {}
    for path in sorted(top.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(path.relative_to(top))] = (st.st_mode, data)
    return out


def unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values in file order; systemd allows a key more than once."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def verify(unit: Path) -> list[str]:
    """systemd-analyze verify's complaints about this unit; other units' noise is dropped."""
    assert SYSTEMD_ANALYZE is not None
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if unit.name in line]


def stub_prefix(tmp_path: Path) -> Path:
    """A prefix whose bin/cpo-gateway exists: verify checks that Exec*= commands do."""
    prefix = tmp_path / "stub-prefix"
    (prefix / "bin").mkdir(parents=True)
    exe = prefix / "bin" / "cpo-gateway"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return prefix


def unit_with_prefix(tmp_path: Path, prefix: Path, extra: str = "") -> Path:
    text = UNIT.read_text().replace(DEFAULT_PREFIX + "/", f"{prefix}/")
    if extra:
        text = text.replace("[Service]\n", f"[Service]\n{extra}\n", 1)
    unit_dir = tmp_path / ("units-broken" if extra else "units")
    unit_dir.mkdir()
    unit = unit_dir / UNIT_NAME
    unit.write_text(text)
    return unit


def test_unit_keeps_the_promises_the_gateway_relies_on() -> None:
    s = unit_settings(UNIT.read_text())
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "WatchdogSec": ["30"],
        "Restart": ["on-failure"],
        "KillSignal": ["SIGTERM"],
        "StateDirectory": ["cpo-gateway"],
        "ConfigurationDirectory": ["cpo-gateway"],
        "ExecStartPre": [f"{DEFAULT_PREFIX}/bin/cpo-gateway check-config -c {DEFAULT_ETC}/gateway.toml"],
        "ExecStart": [f"{DEFAULT_PREFIX}/bin/cpo-gateway run -c {DEFAULT_ETC}/gateway.toml"],
        "CapabilityBoundingSet": [""],
        "AmbientCapabilities": [""],
        "MemoryDenyWriteExecute": ["yes"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
        "UMask": ["0077"],
    }  # fmt: skip
    assert {key: s.get(key) for key in expected} == expected
    assert "78" in s["RestartPreventExitStatus"][0].split()
    assert int(s["TimeoutStopSec"][0]) > DEFAULT_GRACE_S
    assert int(s["LimitNOFILE"][0]) >= 10_000
    assert s["SystemCallFilter"][0] == "@system-service"
    # Each credential is loaded from the key directory the installer creates.
    for cred in s["LoadCredential"]:
        name, _, path = cred.partition(":")
        assert path == f"{DEFAULT_ETC}/credentials/{name}"


def test_dry_run_changes_nothing_and_prints_every_action(tmp_path: Path, project: Path) -> None:
    target = tmp_path / "target"
    prefix, etc, units = target / "opt" / "gw", target / "etc" / "gw", target / "units"
    etc.mkdir(parents=True)
    (etc / "gateway.toml").write_text("# the operator's own config\n")
    before = snapshot(target), snapshot(project)

    proc = install(
        project, "--dry-run", "--prefix", str(prefix), "--etc", str(etc), "--unit-dir", str(units)
    )

    assert proc.returncode == 0, proc.stderr
    assert (snapshot(target), snapshot(project)) == before
    out = proc.stdout
    assert f"-m venv {prefix}" in out
    assert f"{prefix}/bin/python -m pip install" in out
    assert f"write {units}/{UNIT_NAME}" in out
    assert f"ExecStart={prefix}/bin/cpo-gateway run -c {etc}/gateway.toml" in out
    assert f"keeping the existing {etc}/gateway.toml (not overwritten)" in out
    assert f"install -m 0644 -- {project}/config/stations.example.toml {etc}/stations.toml" in out
    assert f"chmod 0700 -- {etc}/credentials" in out
    assert "systemctl enable --now cpo-gateway" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix", "relative/dir"], "--prefix must be an absolute path"),
        (["--etc", "/etc/with space"], "--etc must not contain whitespace"),
        (["--unit-dir"], "--unit-dir needs a directory"),
        (["--frobnicate"], "unknown argument '--frobnicate'"),
    ],
)
def test_bad_arguments_are_refused_before_any_change(
    project: Path, args: list[str], message: str
) -> None:
    proc = install(project, *args, "--dry-run", timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "==>" not in proc.stdout


@pytest.mark.slow
def test_install_into_tmp_dirs(tmp_path: Path, project: Path) -> None:
    prefix, etc, units = tmp_path / "opt" / "gw", tmp_path / "etc" / "gw", tmp_path / "units"
    etc.mkdir(parents=True)
    mine = "# the operator's own config\n"
    (etc / "gateway.toml").write_text(mine)
    checkout = snapshot(project)
    args = ("--prefix", str(prefix), "--etc", str(etc), "--unit-dir", str(units), "--no-systemctl")

    proc = install(project, *args)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"keeping the existing {etc}/gateway.toml (not overwritten)" in proc.stdout
    assert (etc / "gateway.toml").read_text() == mine
    stations = etc / "stations.toml"
    assert stations.read_bytes() == (project / "config" / "stations.example.toml").read_bytes()
    assert stat.S_IMODE(stations.stat().st_mode) == 0o644
    assert stat.S_IMODE((etc / "credentials").stat().st_mode) == 0o700
    # pip built from a copy: no build/ or egg-info appeared in the checkout.
    assert snapshot(project) == checkout

    unit_text = (units / UNIT_NAME).read_text()
    expected = UNIT.read_text().replace(DEFAULT_PREFIX + "/", f"{prefix}/")
    assert unit_text == expected.replace(DEFAULT_ETC + "/", f"{etc}/")
    assert f"ExecStart={prefix}/bin/cpo-gateway run -c {etc}/gateway.toml\n" in unit_text

    exe = prefix / "bin" / "cpo-gateway"
    assert os.access(exe, os.X_OK)
    where = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import cpo_gateway; print(cpo_gateway.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,  # not the checkout, which would shadow the installed package
    )
    # A real (non-editable) install: the package lives in the venv, not in the checkout.
    assert where.stdout.startswith(str(prefix))
    if (project / "cpo_gateway" / "cli.py").exists():
        helped = subprocess.run(
            [str(exe), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert helped.returncode == 0, helped.stderr
        assert "check-config" in helped.stdout

    if SYSTEMD_ANALYZE is not None:
        assert verify(units / UNIT_NAME) == []

    again = install(project, *args)

    assert again.returncode == 0, again.stdout + again.stderr
    assert f"reusing the virtualenv at {prefix}" in again.stdout
    assert f"{units}/{UNIT_NAME} is up to date" in again.stdout
    assert (units / UNIT_NAME).read_text() == unit_text
    assert (etc / "gateway.toml").read_text() == mine


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze not found: the unit cannot be verified on this machine")
    prefix = stub_prefix(tmp_path)
    # The filter must be able to see a complaint, or an empty list would prove nothing.
    broken = unit_with_prefix(tmp_path, prefix, extra="NoSuchSetting=1")
    assert any("NoSuchSetting" in line for line in verify(broken))

    assert verify(unit_with_prefix(tmp_path, prefix)) == []


def test_unit_exposure_stays_low(tmp_path: Path) -> None:
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze not found: the unit's hardening cannot be scored here")
    unit = unit_with_prefix(tmp_path, stub_prefix(tmp_path))
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    if proc.returncode != 0 and found is None:
        pytest.skip(f"systemd-analyze security --offline is not supported here: {proc.stderr}")
    assert found is not None, proc.stdout
    # systemd rates 0-2 "OK"; more would mean a hardening line was lost.
    assert float(found.group(1)) <= 2.0, proc.stdout


# Same restriction as the unit's MemoryDenyWriteExecute=yes, applied by the kernel (Linux 6.3+):
# the gateway's interpreter and C extensions must run without writable+executable memory.
_MDWE_PROBE = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(3)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a writable+executable mapping was allowed")
except OSError:
    pass
import asyncio, sqlite3
import aiohttp, aiosqlite, orjson, structlog, websockets, ocpp.v16
from aiohttp import web

async def main():
    app = web.Application()
    async def hello(request):
        return web.Response(body=orjson.dumps({"ok": True}), content_type="application/json")
    app.router.add_post("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/") as r:
        body = await r.json()
    async with aiosqlite.connect(":memory:") as db:
        await db.execute("create table t (x)")
    await runner.cleanup()
    print("probe", body["ok"])

asyncio.run(main())
"""


def test_python_runs_under_memory_deny_write_execute() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _MDWE_PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode == 3:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "probe True"
