"""The servers under test, each in its own process: the gateway (`python -m cpo_gateway run`)
with a generated config and stations file, or the baseline central system.

CPU seconds and peak RSS are read from /proc/<pid>/stat and /proc/<pid>/status, so both
systems are measured the same way and the load generator's cost is never counted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from cpo_gateway.config_storage import STORAGE_URL_ENV

INBOUND_KEY = "bench-inbound-key-0001"
OUTBOUND_KEY = "bench-outbound-key-0001"
PARTNER = "bench-partner-identifier-0001"
CHARGERS_PER_STATION = 10
OCPP_PATH = "/ocpp"
OIOI_PATH = "/api/v4/request"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def charger_ids(n: int) -> tuple[str, ...]:
    return tuple(f"BENCH-{i:05d}" for i in range(n))


def evse_id(i: int) -> str:
    return f"DE*BEN*E{i:05d}*1"


def cards(n: int) -> tuple[str, ...]:
    """Whitelisted card UIDs: 8 upper-case hex digits, already in normal form."""
    return tuple(f"{0xB0000000 + i:08X}" for i in range(n))


def write_stations(
    path: Path, n_chargers: int, security_profile: int = 0, password_hash: str = ""
) -> int:
    """One station per CHARGERS_PER_STATION chargers, one connector per charger; each charger
    with `security_profile` when it is not 0, and `password_hash` (profile 2) when given."""
    parts: list[str] = []
    n_stations = (n_chargers + CHARGERS_PER_STATION - 1) // CHARGERS_PER_STATION
    for s in range(n_stations):
        parts.append(
            f'[[station]]\nid = "BENCH-ST-{s:04d}"\nname = "Bench station {s}"\n'
            f'latitude = 52.5\nlongitude = 13.4\ncpo_id = "DE*BEN"\nis_open_24 = true\n'
            'address = { street = "Benchstrasse", street_number = "1", city = "Berlin", '
            'zip = "10178", country = "DE" }\ncontact = { phone = "+49 30 1234567" }\n'
        )
        for i in range(s * CHARGERS_PER_STATION, min(n_chargers, (s + 1) * CHARGERS_PER_STATION)):
            parts.append(
                f'[[station.connector]]\nevse_id = "{evse_id(i)}"\ntype = "Type2"\n'
                f'speed_kw = 22.0\ncharge_point = "BENCH-{i:05d}"\nconnector = 1\n'
            )
    if security_profile:
        password = f'password_hash = "{password_hash}"\n' if password_hash else ""
        parts += [
            f'[[charger]]\nid = "BENCH-{i:05d}"\nsecurity_profile = {security_profile}\n{password}'
            for i in range(n_chargers)
        ]
    path.write_text("\n".join(parts), encoding="utf-8")
    return n_stations


def write_gateway_config(
    directory: Path,
    n_chargers: int,
    emp_url: str,
    ocpp_port: int,
    oioi_port: int,
    validate_schemas: bool = True,
    *,
    security_profile: int = 0,
    tls: str = "",
    password_hash: str = "",
    storage_url: str | None = None,
    extra: str = "",
) -> Path:
    """The gateway's default configuration, but for loopback ports, the EMP and quiet logs.
    `validate_schemas` False only to measure what the schema check costs; `tls`: the keys
    of an [ocpp.tls] table; `password_hash`: every charger's (profile 2); `storage_url`:
    where it stores (None: SQLite in its state directory), written to a file beside the
    config (`[storage] url_file`: the URL holds a password); `extra`: more TOML tables."""
    directory.mkdir(parents=True, exist_ok=True)
    write_stations(directory / "stations.toml", n_chargers, security_profile, password_hash)
    tables = f"[ocpp.tls]\n{tls}" if tls else ""
    if storage_url is not None:
        url_file = directory / "storage-url"
        url_file.touch(mode=0o600)
        url_file.write_text(storage_url + "\n", encoding="utf-8")
        tables += f'\n[storage]\nurl_file = "{url_file}"\n'
    if extra:
        tables += f"\n{extra}\n"
    text = f"""
        [gateway]
        state_dir = "{directory / "state"}"
        stations_file = "stations.toml"

        [ocpp]
        host = "127.0.0.1"
        port = {ocpp_port}
        path = "{OCPP_PATH}"
        validate_schemas = {"true" if validate_schemas else "false"}

{textwrap.indent(tables, "        ")}
        [oioi]
        host = "127.0.0.1"
        port = {oioi_port}
        path = "{OIOI_PATH}"

        [[emp]]
        name = "sandbox"
        url = "{emp_url}"
        api_key = "{OUTBOUND_KEY}"
        inbound_api_key = "{INBOUND_KEY}"
        partner_identifier = "{PARTNER}"

        [logging]
        level = "warning"
        format = "json"
    """
    path = directory / "gateway.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@dataclass
class Usage:
    cpu_s: float
    rss_mb: float
    peak_rss_mb: float


class ServerProcess:
    """A server subprocess; `usage()` reads its CPU time and memory from /proc."""

    def __init__(self, name: str, argv: list[str], log_path: Path, port: int) -> None:
        self.name = name
        self.port = port
        self._argv = argv
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def gateway(
        cls,
        directory: Path,
        n_chargers: int,
        emp_url: str,
        validate_schemas: bool = True,
        *,
        security_profile: int = 0,
        tls: str = "",
        password_hash: str = "",
        storage_url: str | None = None,
        extra: str = "",
    ) -> ServerProcess:
        """`storage_url` None: SQLite in the state directory; `extra`: more TOML tables."""
        ocpp_port, oioi_port = free_port(), free_port()
        config = write_gateway_config(
            directory,
            n_chargers,
            emp_url,
            ocpp_port,
            oioi_port,
            validate_schemas,
            security_profile=security_profile,
            tls=tls,
            password_hash=password_hash,
            storage_url=storage_url,
            extra=extra,
        )
        argv = [sys.executable, "-m", "cpo_gateway", "run", "-c", str(config)]
        server = cls("gateway", argv, directory / "gateway.log", ocpp_port)
        server.oioi_port = oioi_port
        return server

    @classmethod
    def baseline(cls, directory: Path, protocol: str = "1.6") -> ServerProcess:
        """The `ocpp` library's README central system of that OCPP version."""
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        module = (
            "cpo_gateway.bench.baseline201" if protocol == "2.0.1" else "cpo_gateway.bench.baseline"
        )
        argv = [sys.executable, "-m", module, "--port", str(port)]
        return cls("baseline", argv, directory / "baseline.log", port)

    oioi_port: int = 0

    @property
    def oioi_url(self) -> str:
        return f"http://127.0.0.1:{self.oioi_port}{OIOI_PATH}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, timeout_s: float = 60.0) -> None:
        log = self._log_path.open("ab")
        # A benchmark says where its servers store (their config): never the caller's
        # environment (a test run on PostgreSQL sets one there for its own gateways).
        env = {k: v for k, v in os.environ.items() if k != STORAGE_URL_ENV}
        self._proc = await asyncio.to_thread(
            subprocess.Popen, self._argv, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._proc.returncode}: {self.tail()}"
                )
            if await self._ready():
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready within {timeout_s} s: {self.tail()}")

    async def _ready(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        if not self.oioi_port:
            return True
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{self.oioi_port}/healthz") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    def usage(self) -> Usage:
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)
        rss = peak = 0.0
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
        return Usage(cpu, rss, peak)

    async def stop(self, timeout_s: float = 30.0) -> int:
        if self._proc is None or self._proc.poll() is not None:
            return self._proc.returncode if self._proc else 0
        self._proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self._proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return await asyncio.to_thread(self._proc.wait)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or an OOM kill."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            await asyncio.to_thread(self._proc.wait)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
