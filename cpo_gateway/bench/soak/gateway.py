"""A gateway for the reliability scenarios: its files on disk, and the daemon as a child
process that can be killed and restarted on the same ports with the same state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

INBOUND_KEY = "soak-inbound-key-0001"
OUTBOUND_KEY = "soak-outbound-key-0001"
PARTNER = "soak-partner-identifier-01"
_READY_POLL_S = 0.05

CONFIG = """
[gateway]
state_dir = "{state}"
stations_file = "stations.toml"
shutdown_grace_s = {grace}

[ocpp]
host = "127.0.0.1"
port = {ocpp_port}
heartbeat_interval_s = 300
offline_grace_s = 2.0
call_timeout_s = 10.0
allow_unknown_chargers = {allow_unknown}

[oioi]
host = "127.0.0.1"
port = {oioi_port}

[[emp]]
name = "sandbox"
url = "{emp_url}"
api_key = "{outbound}"
inbound_api_key = "{inbound}"
partner_identifier = "{partner}"
online_authorization = false
offline_policy = "reject"

[sessions]
status_debounce_s = 0.2

[outbox]
tick_s = 0.1
base_backoff_s = 0.05
max_backoff_s = 2.0

[logging]
level = "{log_level}"
format = "json"
"""


def charger_id(index: int) -> str:
    return f"SOAK-CP-{index:05d}"


def evse_id(index: int, connector: int) -> str:
    return f"DE*CPO*E{index:05d}*{connector}"


def stations_toml(chargers: int) -> str:
    """One station per charger, two connectors each, EVSE IDs from evse_id()."""
    parts = []
    for i in range(1, chargers + 1):
        parts.append(
            f'[[station]]\nid = "DE-SOAK-{i:05d}"\nname = "Soak station {i}"\n'
            'latitude = 52.5\nlongitude = 13.4\ncpo_id = "DE*CPO"\nis_open_24 = true\n'
            'address = { street = "Teststr.", street_number = "1", city = "Berlin", '
            'zip = "10115", country = "DE" }\ncontact = { phone = "+49 30 1234567" }\n'
        )
        for c in (1, 2):
            parts.append(
                f'[[station.connector]]\nevse_id = "{evse_id(i, c)}"\ntype = "Type2"\n'
                f'speed_kw = 22.0\ncharge_point = "{charger_id(i)}"\nconnector = {c}\n'
            )
    return "\n".join(parts)


def free_port() -> int:
    """A loopback port free right now (the kernel's choice), for a daemon restarted on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    directory: Path,
    *,
    emp_url: str,
    chargers: int,
    ocpp_port: int = 0,
    oioi_port: int = 0,
    allow_unknown: bool = False,
    grace_s: float = 5.0,
    log_level: str = "warning",
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stations.toml").write_text(stations_toml(chargers), encoding="utf-8")
    path = directory / "gateway.toml"
    text = CONFIG.format(
        state=directory / "state",
        grace=grace_s,
        ocpp_port=ocpp_port,
        oioi_port=oioi_port,
        allow_unknown="true" if allow_unknown else "false",
        emp_url=emp_url,
        outbound=OUTBOUND_KEY,
        inbound=INBOUND_KEY,
        partner=PARTNER,
        log_level=log_level,
    )
    path.write_text(text, encoding="utf-8")
    return path


async def port_open(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class GatewayProcess:
    """`python -m cpo_gateway run -c CONFIG` as a child; its output appended to `log_path`."""

    def __init__(
        self,
        config: Path,
        ocpp_port: int,
        oioi_port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        """`env`: the child's environment (default: this process's)."""
        self.config = config
        self._env = env
        self.ocpp_port = ocpp_port
        self.oioi_port = oioi_port
        self.log_path = log_path
        self.starts = 0
        self.kills = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, timeout_s: float = 30.0) -> None:
        """Spawn the daemon and wait until both listeners accept connections."""
        if self.running:
            raise RuntimeError("gateway process already running")
        with self.log_path.open("ab") as log_file:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cpo_gateway",
                "run",
                "-c",
                str(self.config),
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env={**(os.environ if self._env is None else self._env), "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        for _ in range(int(timeout_s / _READY_POLL_S) + 1):
            if self._proc.returncode is not None:
                raise RuntimeError(
                    f"gateway exited with {self._proc.returncode} at start; see {self.log_path}"
                )
            if await port_open(self.ocpp_port) and await port_open(self.oioi_port):
                return
            await asyncio.sleep(_READY_POLL_S)
        raise TimeoutError(f"gateway not listening after {timeout_s}s; see {self.log_path}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or an OOM kill."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        self.kills += 1

    async def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; the exit code (a SIGKILL after `timeout_s` gives -9)."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("gateway process never started")
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode
