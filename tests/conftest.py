"""Shared fixtures: config files on disk, a running gateway on loopback port 0, the storage
backend the suite runs on, and the Hypothesis profiles every property test runs under.

`--backend=postgresql` (or CPO_GATEWAY_TEST_BACKEND=postgresql) runs every test on PostgreSQL:
one throwaway server for the run (cpo_gateway/bench/pg_server.py), a fresh database per test, and
CPO_GATEWAY_STORAGE_URL pointing at it, so every gateway a test starts, in this process or as a
subprocess, stores there. Tests that inspect the SQLite file itself are marked `sqlite_only`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from cpo_gateway.app import Gateway
from cpo_gateway.bench.pg_server import PgServer, PgUnavailableError
from cpo_gateway.config import load_config
from cpo_gateway.config_storage import STORAGE_URL_ENV
from cpo_gateway.csms.server import CsmsServer
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import EmpClient, SandboxEmp
from cpo_gateway.store import Store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_STATIONS = ROOT / "config" / "stations.example.toml"
INBOUND_KEY = "test-inbound-key-0001"
OUTBOUND_KEY = "test-outbound-key-0001"
PARTNER = "test-partner-identifier-0001"
BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("CPO_GATEWAY_TEST_BACKEND", "sqlite"),
        help="storage backend of every gateway the tests start (default: sqlite, or"
        " $CPO_GATEWAY_TEST_BACKEND)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--backend") == "sqlite":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"sqlite only: {why}".rstrip(": ")))


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend in force for this run: "sqlite" or "postgresql"."""
    return str(request.config.getoption("--backend"))


@pytest.fixture(scope="session")
def postgres(backend: str) -> Iterator[PgServer]:
    """One throwaway PostgreSQL server for the whole run, started by the first test that needs
    it. Missing PostgreSQL skips such a test, unless the run is on PostgreSQL: then it fails."""
    try:
        server = PgServer()
        server.start()
    except PgUnavailableError as exc:
        if backend == "postgresql":
            pytest.fail(f"--backend=postgresql: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(postgres: PgServer) -> Iterator[str]:
    """A fresh, empty database for this test (dropped afterwards, connections and all)."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="module", autouse=True)
def _module_storage_backend(request: pytest.FixtureRequest, backend: str) -> Iterator[None]:
    """A database for the module, for gateways that module-scoped fixtures start (they are set
    up before any test's own database); each test still gets its own over it."""
    with pytest.MonkeyPatch.context() as patch:
        if backend == "postgresql":
            server: PgServer = request.getfixturevalue("postgres")
            url = server.create_database()
            patch.setenv(STORAGE_URL_ENV, url)
            try:
                yield
            finally:
                server.drop_database(url)
        else:
            patch.delenv(STORAGE_URL_ENV, raising=False)
            yield


@pytest.fixture(autouse=True)
def _storage_backend(
    request: pytest.FixtureRequest, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --backend=postgresql, every test's gateways store in a fresh database. With
    sqlite, a URL set in the developer's shell must not move the run elsewhere."""
    if backend == "postgresql":
        monkeypatch.setenv(STORAGE_URL_ENV, request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv(STORAGE_URL_ENV, raising=False)


# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (unset: Hypothesis picks, as it always has:
# "default", random examples, for a plain local pytest run).
# - ci: scripts/test. The same examples on every run (derandomize), so CI turns red only when
#   a change of code makes it so, never on the luck of a draw; no deadline (no timing
#   assertions: CI machines vary).
# - fuzz: scripts/fuzz. Random examples, many more of them (HYPOTHESIS_FUZZ_EXAMPLES, default
#   2000 where Hypothesis runs 100), and the blob to replay any failure it finds.
HYPOTHESIS_EXAMPLES = 100  # Hypothesis' own default, the unit that examples() scales
settings.register_profile(
    "ci",
    settings.get_profile("default"),
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    settings.get_profile("default"),
    max_examples=int(os.environ.get("HYPOTHESIS_FUZZ_EXAMPLES", str(20 * HYPOTHESIS_EXAMPLES))),
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", settings.get_current_profile_name()))


def examples(n: int, profile: settings | None = None) -> int:
    """`n` examples at the scale of the loaded profile (or `profile`).

    A test's own `@settings(max_examples=...)` overrides the profile's; asking for
    `examples(n)` instead keeps the test's proportion (a slow test runs fewer than a fast one)
    while the fuzz profile multiplies every count alike. tests/test_hypothesis_profiles.py
    refuses a literal count."""
    active = profile if profile is not None else settings()
    return max(1, n * active.max_examples // HYPOTHESIS_EXAMPLES)


def write_config(
    directory: Path,
    *,
    emp_url: str = "http://127.0.0.1:9/api/v4/request",
    extra: str = "",
    emps: str | None = None,
    stations: Path | None = None,
    gateway: str = "",
    ocpp: str = "",
    oioi: str = "",
    sessions: str = "",
    outbox: str = "",
    admin: str | None = None,
) -> Path:
    """A complete config on loopback port 0 with the example stations and one EMP.

    `admin`: keys of an [admin] table on loopback port 0 (None: no admin listener). Under
    --backend=postgresql the file names the test's database in [storage] url."""
    stations_file = directory / "stations.toml"
    shutil.copy(stations or EXAMPLE_STATIONS, stations_file)
    emp_block = (
        emps
        if emps is not None
        else f"""
        [[emp]]
        name = "sandbox"
        url = "{emp_url}"
        api_key = "{OUTBOUND_KEY}"
        inbound_api_key = "{INBOUND_KEY}"
        partner_identifier = "{PARTNER}"
        online_authorization = true
        offline_policy = "reject"
        verify_timeout_s = 1.0
    """
    )
    text = f"""
        [gateway]
        state_dir = "{directory / "state"}"
        stations_file = "stations.toml"
        shutdown_grace_s = 5.0
        {gateway}

        [ocpp]
        host = "127.0.0.1"
        port = 0
        heartbeat_interval_s = 60
        offline_grace_s = 1.0
        call_timeout_s = 3.0
        {ocpp}

        [oioi]
        host = "127.0.0.1"
        port = 0
        request_deadline_s = 4.0
        {oioi}

        [sessions]
        status_debounce_s = 0.1
        {sessions}

        [outbox]
        tick_s = 0.1
        base_backoff_s = 0.05
        {outbox}

        [logging]
        level = "info"
        format = "json"
        {emp_block}
        {extra}
    """
    storage_url = os.environ.get(STORAGE_URL_ENV)
    if storage_url:
        # Also in the file: most tests load it with an empty environment (load_config(path, {})).
        text += f"""
        [storage]
        url = "{storage_url}"
    """
    if admin is not None:
        text += f"""
        [admin]
        host = "127.0.0.1"
        port = 0
        {admin}
    """
    path = directory / "gateway.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


ConfigFactory = Callable[..., Path]


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    def make(**kwargs: Any) -> Path:
        return write_config(tmp_path, **kwargs)

    return make


class Harness:
    """A gateway running in this event loop, with the sandbox EMP it posts to."""

    def __init__(self, gateway: Gateway, emp: SandboxEmp) -> None:
        self.gateway = gateway
        self.emp = emp

    @property
    def csms(self) -> CsmsServer:
        assert self.gateway.csms is not None, "the gateway is not started"
        return self.gateway.csms

    @property
    def ocpp_url(self) -> str:
        assert self.gateway.csms is not None
        return f"ws://127.0.0.1:{self.gateway.csms.port}{self.gateway.config.ocpp.path}"

    @property
    def oioi_url(self) -> str:
        assert self.gateway.oioi is not None
        return f"http://127.0.0.1:{self.gateway.oioi.port}{self.gateway.config.oioi.path}"

    @property
    def base_url(self) -> str:
        assert self.gateway.oioi is not None
        return f"http://127.0.0.1:{self.gateway.oioi.port}"

    @property
    def store(self) -> Store:
        return self.gateway.store

    def client(self) -> EmpClient:
        return EmpClient(self.oioi_url, INBOUND_KEY)

    def charger(self, cp_id: str, **kwargs: Any) -> SimCharger:
        return SimCharger(cp_id, self.ocpp_url, call_timeout=10, **kwargs)


@pytest.fixture
async def emp() -> AsyncIterator[SandboxEmp]:
    sandbox = SandboxEmp(api_key=OUTBOUND_KEY, verify_codes={})
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


@contextlib.asynccontextmanager
async def running_gateway(gateway: Gateway, emp: SandboxEmp) -> AsyncIterator[Harness]:
    """Start `gateway`, yield it with its EMP, stop it; no background task may have failed."""
    await gateway.start()
    try:
        yield Harness(gateway, emp)
    finally:
        await gateway.stop()
    assert gateway.tasks.failures == 0, "a background task failed: see the log"


@pytest.fixture
async def harness(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[Harness]:
    cfg = load_config(write_config(tmp_path, emp_url=emp.url), {})
    async with running_gateway(Gateway(cfg), emp) as h:
        yield h
