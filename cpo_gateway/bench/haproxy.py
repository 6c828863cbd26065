"""A real HAProxy (Debian's package) in front of gateway nodes on loopback, for the tests
and the cluster benchmarks.

`Haproxy` renders config/haproxy.example.cfg for N local nodes into a temporary directory:
frontends bind 127.0.0.1 on free ports, each backend's server lines are made from its first
one (a node's traffic port, plus `port` = its health port, since local nodes cannot share
one), the check timing is shortened and the stats socket moves into the directory. The rest
(balance, hash type, timeouts, checks, on-marked-down) is the example's own, so the tests
exercise what a deployment ships. The result is checked with `haproxy -c`, then run in the
foreground (`-db`), logging to a file; `show stat` on the stats socket tells a server's state.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cpo_gateway.bench.pg_server import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "haproxy.example.cfg"
START_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Which port of a node each backend of the example sends traffic to.
BACKEND_PORTS = {"chargers": "ocpp_port", "oioi": "oioi_port", "ocpi": "ocpi_port"}


class HaproxyUnavailableError(RuntimeError):
    """haproxy is not installed (the message says how to get it)."""


class HaproxyError(RuntimeError):
    """haproxy refused the config, did not start, or refused a command (with its log)."""


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy",) if Path(p).is_file()), None
    )


@dataclass(frozen=True)
class Node:
    """One gateway node's loopback ports. `ocpi_port` None: no OCPI listener, and the
    rendered config leaves out the example's ocpi frontend and backend."""

    name: str
    ocpp_port: int
    oioi_port: int
    health_port: int
    ocpi_port: int | None = None


@dataclass(frozen=True)
class Timing:
    """Health-check timing written over the example's (2 s, fall 3, rise 2) for tests."""

    inter_ms: int = 200
    fall: int = 2
    rise: int = 1


def render(
    nodes: list[Node],
    directory: Path,
    timing: Timing,
    example: Path = EXAMPLE,
    connections: int = 2048,
) -> str:
    """The example config for `nodes`; frontend ports are chosen here (see `bind_ports`).
    `connections`: each frontend's maxconn (the process's: that and 1,024 more, at least
    4,096); HAProxy asks for about two file descriptors per connection of the process."""
    sections = _sections(example.read_text(encoding="utf-8"))
    keep_ocpi = all(n.ocpi_port is not None for n in nodes)
    out: list[str] = []
    for header, body in sections:
        kind, _, name = header.partition(" ")
        if name == "ocpi" and not keep_ocpi:
            continue
        out.append(header)
        if kind == "global":
            body = [
                re.sub(r"stats socket \S+", f"stats socket {directory / 'admin.sock'}", line)
                for line in body
            ]
            # A test needs a few thousand connections, not the example's file-descriptor budget.
            total = max(4096, connections + 1024)
            body = [re.sub(r"^(\s*)maxconn \d+", rf"\g<1>maxconn {total}", line) for line in body]
        elif kind == "frontend":
            body = [
                re.sub(r"^(\s*)bind \S*:(\d+)", rf"\g<1>bind 127.0.0.1:{free_port()}", line)
                for line in body
            ]
            body = [
                re.sub(r"^(\s*)maxconn \d+", rf"\g<1>maxconn {connections}", line) for line in body
            ]
        elif kind == "backend":
            body = _servers(name, body, nodes, timing)
        out.extend(body)
    return "\n".join(out) + "\n"


def bind_ports(config: str) -> dict[str, int]:
    """Each frontend's name and the loopback port it binds in a rendered config."""
    ports: dict[str, int] = {}
    frontend = None
    for line in config.splitlines():
        if line.startswith("frontend "):
            frontend = line.split()[1]
        elif not line.startswith((" ", "\t")):
            frontend = None
        found = re.match(r"\s+bind 127\.0\.0\.1:(\d+)", line)
        if frontend is not None and found:
            ports[frontend] = int(found.group(1))
    return ports


def _sections(text: str) -> list[tuple[str, list[str]]]:
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] not in " \t":
            sections.append((line.strip(), []))
        elif sections:
            sections[-1][1].append(line)
    return sections


def _servers(backend: str, body: list[str], nodes: list[Node], timing: Timing) -> list[str]:
    if backend not in BACKEND_PORTS:
        raise ValueError(f"backend {backend!r} of the example: which node port does it use?")
    template = next((line for line in body if line.split()[:1] == ["server"]), None)
    if template is None:
        raise ValueError(f"backend {backend!r} of the example has no server line")
    indent = template[: len(template) - len(template.lstrip())]
    rest = template.split()[3:]  # after "server NAME ADDRESS:PORT"
    lines = []
    for line in body:
        if line.split()[:1] == ["server"]:
            continue
        if line.split()[:1] == ["default-server"]:
            line = re.sub(r"\binter \S+", f"inter {timing.inter_ms}ms", line)
            line = re.sub(r"\bfall \d+", f"fall {timing.fall}", line)
            line = re.sub(r"\brise \d+", f"rise {timing.rise}", line)
        lines.append(line)
    for node in nodes:
        port = getattr(node, BACKEND_PORTS[backend])
        words = ["server", node.name, f"127.0.0.1:{port}", *rest, "port", str(node.health_port)]
        lines.append(indent + " ".join(words))
    return lines


class Haproxy:
    """One haproxy process for `nodes`, its files in `directory`."""

    def __init__(
        self,
        nodes: list[Node],
        directory: Path,
        timing: Timing | None = None,
        connections: int = 2048,
    ) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise HaproxyUnavailableError("haproxy is not installed: run scripts/services-setup")
        self._binary = binary
        self.nodes = nodes
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config_text = render(nodes, directory, timing or Timing(), connections=connections)
        self.config_file = directory / "haproxy.cfg"
        self.config_file.write_text(self.config_text, encoding="utf-8")
        self.ports = bind_ports(self.config_text)
        self.socket_path = directory / "admin.sock"
        self.log_file = directory / "haproxy.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def check(self) -> str:
        """`haproxy -c`: the rendered config is valid (its warnings, if any, are returned)."""
        done = subprocess.run(
            [self._binary, "-c", "-f", str(self.config_file)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise HaproxyError(f"haproxy -c refused the config:\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def start(self) -> None:
        self.check()
        log = self.log_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                [self._binary, "-db", "-f", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise HaproxyError(f"haproxy exited {self._proc.returncode}:\n{self.log_text()}")
            with contextlib.suppress(OSError):
                self.command("show info")
                if all(_accepts(port) for port in self.ports.values()):
                    return
            if time.monotonic() > deadline:
                raise HaproxyError(f"haproxy not ready in {START_TIMEOUT_S} s:\n{self.log_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (a hard stop: connections are closed), then wait."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=30)
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)
        self._proc = None

    def __enter__(self) -> Haproxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, frontend: str, path: str = "") -> str:
        scheme = "ws" if frontend == "chargers" else "http"
        return f"{scheme}://127.0.0.1:{self.ports[frontend]}{path}"

    # --- the stats socket --------------------------------------------------------------------
    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> list[dict[str, str]]:
        """`show stat`: one row per frontend, server and backend (pxname, svname, status, ...)."""
        text = self.command("show stat").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def server(self, backend: str, name: str) -> dict[str, str]:
        for row in self.stats():
            if row["pxname"] == backend and row["svname"] == name:
                return row
        raise KeyError(f"{backend}/{name} is not in haproxy's stats")

    def status(self, backend: str, name: str) -> str:
        """ "UP", "DOWN", "UP 1/2" (going down), "DOWN 1/2" (going up), "MAINT", ..."""
        return self.server(backend, name)["status"]

    def set_state(self, name: str, state: str) -> None:
        """`set server <backend>/<name> state ready|drain|maint` in every backend: drain takes
        no new connections and keeps the open ones, maint (with shutdown-sessions) cuts them."""
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"state must be ready, drain or maint, not {state!r}")
        for backend in sorted({row["pxname"] for row in self.stats() if row["svname"] == name}):
            answer = self.command(f"set server {backend}/{name} state {state}").strip()
            if answer:
                raise HaproxyError(f"haproxy refused: {answer}")

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process ends, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
