"""OCPI in the running gateway: the [ocpi] listener beside OIOI, registration at start
(retried), `cpo-gateway ocpi token-a|register|partners`, /metrics, and check-config."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from cpo_gateway.app import Gateway
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.bridge.model import Delivery, DeliveryStatus, Place, VerifyOutcome
from cpo_gateway.cli import main
from cpo_gateway.config import ConfigError, load_config
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from cpo_gateway.sim.ocpi_emsp import SandboxEmsp
from tests.conftest import EXAMPLE_STATIONS, Harness, running_gateway, write_config


class Taken:
    """The partner adapter for OCPI deliveries (the modules that render them are not part of
    this test): takes every owed message, so the outbox stays quiet."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    async def verify(self, emp: str, uid: str, place: Place | None = None) -> VerifyOutcome:
        return VerifyOutcome.UNKNOWN

    async def deliver(self, emp: str, kind: str, payload: Mapping[str, Any]) -> Delivery:
        self.kinds.append(kind)
        return Delivery(DeliveryStatus.DELIVERED)


def _gateway(path: Path) -> Gateway:
    return Gateway(load_config(path, {}), adapters={"ocpi": Taken()})


OCPI_TABLE = """
[ocpi]
host = "127.0.0.1"
port = 0
country_code = "DE"
party_id = "CPO"
business_name = "Test CPO"
"""


def _ocpi_emps(out: SandboxEmsp | None) -> str:
    text = """
[[emp]]
name = "emsp-in"
protocol = "ocpi"
"""
    if out is not None:
        text += f"""
[[emp]]
name = "emsp-out"
protocol = "ocpi"
versions_url = "{out.versions_url}"
token_a = "{out.token_a}"
request_timeout_s = 5.0
"""
    return text


@pytest.fixture
async def emsp() -> AsyncIterator[SandboxEmsp]:
    async with SandboxEmsp() as sandbox:
        yield sandbox


async def _until(check: object, what: str, rounds: int = 200) -> None:
    for _ in range(rounds):
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


SEEN: list[str] = []  # everything printed or logged so far in the test (the gateway's log too)


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run a command; its own output (after the header line `argv` prints, if any)."""
    before = capsys.readouterr()
    SEEN.extend([before.out, before.err])
    saved = structlog.get_config()
    try:
        code = await asyncio.to_thread(main, list(argv))
    finally:
        # main() points the log at this test's captured stderr: later tests must not write
        # to it once it is closed
        structlog.configure(**saved)
    out = capsys.readouterr()
    # the running gateway logs to stdout too: keep the command's lines only
    lines = [ln for ln in out.out.splitlines() if not ln.startswith(("{", "20"))]
    return code, "\n".join(lines), out.err


async def test_both_directions_beside_oioi(
    tmp_path: Path, emp: SandboxEmp, emsp: SandboxEmsp, capsys: pytest.CaptureFixture[str]
) -> None:
    emsp.fail_credentials = 1  # the first attempt at start fails: retried with back-off
    path = write_config(tmp_path, emp_url=emp.url, extra=_ocpi_emps(emsp) + OCPI_TABLE)
    cfg = load_config(path, {})
    async with running_gateway(Gateway(cfg, adapters={"ocpi": Taken()}), emp) as h:
        gw = h.gateway
        assert gw.ocpi is not None
        versions = gw.ocpi.base_url + "/versions"

        async def outbound_done() -> bool:
            link = await h.store.link("emsp-out")
            return link is not None and link.state is LinkState.REGISTERED

        await _until(outbound_done, "registration with emsp-out")
        assert emsp.registration is not None and emsp.refused == 0

        # the other partner registers with us using a token A from the CLI
        code, out, err = await _cli(capsys, "ocpi", "token-a", "emsp-in", "-c", str(path))
        assert code == 0 and "shown once" in err
        token_a = out.strip()
        assert len(token_a) == 43
        async with SandboxEmsp(party_id="INC") as other:
            reg = await other.register_with(versions, token_a)
            link = await h.store.link("emsp-in")
            assert link is not None and link.state is LinkState.REGISTERED
            assert link.token_out == reg.token_ours

        code, out, _ = await _cli(capsys, "ocpi", "partners", "-c", str(path))
        assert code == 0
        rows = {line.split("\t")[0]: line.split("\t") for line in out.strip().splitlines()[1:]}
        assert rows["emsp-out"][1] == "registered" and rows["emsp-out"][3] == "we register"
        assert rows["emsp-in"][1] == "registered" and rows["emsp-in"][3] == "it registers"
        assert "cdrs/RECEIVER" in rows["emsp-out"][5]
        assert token_a not in out and reg.token_theirs not in out  # tokens are never shown

        metrics = await gw.metrics()
        assert 'cpo_gateway_ocpi_requests_total{module="credentials",status_code="1000"}' in (
            metrics
        )
        # OIOI keeps working on the same gateway: its EMP got the station data
        await _until(
            lambda: _true(any(r.call == "station-post" for r in emp.requests)), "station-post"
        )
    _assert_no_token_logged(capsys, reg.token_theirs, reg.token_ours, emsp.registration.token_ours)


async def _true(value: bool) -> bool:
    return value


def _assert_no_token_logged(capsys: pytest.CaptureFixture[str], *tokens: str) -> None:
    out = capsys.readouterr()
    logged = "".join([*SEEN, out.out, out.err])
    assert "ocpi.registered" in logged  # the log was captured
    for token in tokens:
        assert token not in logged


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_register_on_demand_from_the_cli(
    tmp_path: Path, emp: SandboxEmp, emsp: SandboxEmsp, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI tells the partner the public base_url: here a fixed loopback port.
    port = _free_port()
    table = OCPI_TABLE.replace(
        "port = 0", f'port = {port}\nbase_url = "http://127.0.0.1:{port}/ocpi/cpo"'
    )
    path = write_config(tmp_path, emp_url=emp.url, extra=_ocpi_emps(emsp) + table)
    async with running_gateway(_gateway(path), emp) as h:

        async def registered() -> bool:
            link = await h.store.link("emsp-out")
            return link is not None and link.state is LinkState.REGISTERED

        await _until(registered, "registration at start")
        reg = emsp.registration
        assert reg is not None
        first = reg.token_ours
        # on demand again: the credentials are updated (PUT), new tokens both ways
        code, out, err = await _cli(capsys, "ocpi", "register", "emsp-out", "-c", str(path))
        assert code == 0 and "registered" in out, err
        link = await h.store.link("emsp-out")
        again = emsp.registration
        assert link is not None and again is not None and again.token_ours != first
        # while our PUT was open, the eMSP's old token still worked (no window of 401s)
        assert emsp.old_token_during_update is True
        stale = await emsp.send(
            "GET", f"http://127.0.0.1:{port}/ocpi/cpo/versions", reg.token_theirs
        )
        assert stale["_http_status"] == 401  # replaced once the exchange was done
        assert link.token_out == again.token_ours and link.token_in == again.token_theirs
        emsp.fail_credentials = 1
        code, _, err = await _cli(capsys, "ocpi", "register", "emsp-out", "-c", str(path))
        assert code == 1 and "503" in err, err
        code, out, err = await _cli(capsys, "ocpi", "register", "nobody", "-c", str(path))
        assert code == 64 and "not an [[emp]]" in err
        # a failed attempt left the registered link usable: same tokens both ways
        kept = await h.store.link("emsp-out")
        assert kept is not None and kept.state is LinkState.REGISTERED
        assert (kept.token_in, kept.token_out) == (link.token_in, link.token_out)
        answer = await emsp.send(
            "GET", f"http://127.0.0.1:{port}/ocpi/cpo/versions", again.token_theirs
        )
        assert answer["status_code"] == 1000


async def test_token_a_is_refused_once_used(
    harness_ocpi: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = harness_ocpi.gateway
    assert gw.ocpi is not None
    code, out, _ = await _cli(capsys, "ocpi", "token-a", "emsp-in", "-c", str(gw.config.path))
    token_a = out.strip()
    async with SandboxEmsp() as other:
        await other.register_with(gw.ocpi.base_url + "/versions", token_a)
        again = await other.send("GET", gw.ocpi.base_url + "/versions", token_a)
    assert code == 0 and again["_http_status"] == 401


@pytest.fixture
async def harness_ocpi(tmp_path: Path, emp: SandboxEmp) -> AsyncIterator[Harness]:
    path = write_config(tmp_path, emp_url=emp.url, extra=_ocpi_emps(None) + OCPI_TABLE)
    async with running_gateway(_gateway(path), emp) as h:
        yield h


# --- check-config --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (_ocpi_emps(None), "ocpi: expected an [ocpi] table"),
        (OCPI_TABLE.replace('"DE"', '"Deu"') + _ocpi_emps(None), "ocpi.country_code"),
        (OCPI_TABLE.replace('"CPO"', '"CP"'), "ocpi.party_id"),
        (OCPI_TABLE.replace("port = 0", "port = 0\nbase_url = 'ftp://x'"), "ocpi.base_url"),
        (
            OCPI_TABLE
            + '\n[[emp]]\nname = "p"\nprotocol = "ocpi"\nversions_url = "http://127.0.0.1:1/v"\n',
            "emp[1].token_a",
        ),
        (
            OCPI_TABLE + '\n[[emp]]\nname = "p"\nprotocol = "ocpi"\nurl = "http://x"\n',
            "emp[1].url: unknown key",
        ),
        (OCPI_TABLE + '\n[[emp]]\nname = "p"\nprotocol = "ocpx"\n', "emp[1].protocol"),
    ],
)
def test_check_config_names_the_key(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, extra=extra), {})
    assert any(needle in p for p in caught.value.problems), caught.value.problems


def test_token_a_from_a_file_or_the_environment(tmp_path: Path) -> None:
    (tmp_path / "token-a").write_text("from-a-file\n")
    extra = (
        OCPI_TABLE
        + '\n[[emp]]\nname = "f"\nprotocol = "ocpi"\nversions_url = "http://127.0.0.1:1/v"\n'
        + 'token_a_file = "token-a"\n'
        + '\n[[emp]]\nname = "e-1"\nprotocol = "ocpi"\nversions_url = "http://127.0.0.1:1/v"\n'
    )
    cfg = load_config(
        write_config(tmp_path, extra=extra), {"CPO_GATEWAY_EMP_E_1_TOKEN_A": "from-env"}
    )
    by_name = {e.name: e for e in cfg.ocpi_emps}
    assert by_name["f"].token_a == "from-a-file" and by_name["e-1"].token_a == "from-env"
    assert cfg.ocpi is not None and cfg.ocpi.port == 0 and cfg.ocpi.party_id == "CPO"
    assert "from-env" not in repr(by_name["e-1"])


def test_check_config_shows_the_ocpi_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # (no OCPI partner: until an adapter delivers to them, check-config says this build
    # serves none, see tests/test_emp_partners.py)
    path = write_config(tmp_path, extra=OCPI_TABLE)
    saved = structlog.get_config()
    try:
        code = main(["check-config", "-c", str(path)])
    finally:
        structlog.configure(**saved)
    out = capsys.readouterr().out
    assert code == 0 and "OCPI:       http://127.0.0.1:0/ocpi/cpo/versions as DE*CPO" in out
    assert "0 partner(s)" in out


def test_check_config_names_a_station_that_cannot_be_an_ocpi_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_id = "DE-" + "X" * 40
    stations = tmp_path / "long-id.toml"
    stations.write_text(EXAMPLE_STATIONS.read_text().replace("DE-MUC-MAX-01", long_id))
    path = write_config(tmp_path, extra=OCPI_TABLE + _ocpi_emps(None), stations=stations)
    saved = structlog.get_config()
    try:
        code = main(["check-config", "-c", str(path)])
        err = capsys.readouterr().err
        # The same file with no OCPI partner: OCPI's limits are not its business.
        alone = main(["check-config", "-c", str(write_config(tmp_path, stations=stations))])
    finally:
        structlog.configure(**saved)
    assert code == 78 and alone == 0, err
    assert "stations.toml: station[1].id: expected at most 36 ASCII characters" in err
    assert long_id in err
