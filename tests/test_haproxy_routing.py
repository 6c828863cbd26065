"""Chargers behind a real HAProxy running config/haproxy.example.cfg: each charger id lands on
the same node at every reconnect, EMP requests go round-robin, a node whose /healthz fails is
marked down and its chargers (only its own) move to the other node, and a draining node's
chargers (close code 1012) reconnect to the other one.

Two single-node gateways on SQLite in this event loop stand for the nodes: what is tested is
the routing the example config ships, not the cluster's shared state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from cpo_gateway.app import Gateway
from cpo_gateway.bench.haproxy import Haproxy, Node, haproxy_binary
from cpo_gateway.config import load_config
from cpo_gateway.sim.charger.simulator import SimCharger
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import STORAGE_URL_ENV, write_config

pytestmark = pytest.mark.skipif(
    haproxy_binary() is None, reason="haproxy is not installed: run scripts/services-setup"
)

CHARGERS = [f"CP-HA-{i:03d}" for i in range(1, 21)]
WAIT_S = 30.0


def _stations() -> str:
    """One station per charger, so every one is known and boots Accepted on either node."""
    blocks = [
        f"""
[[station]]
id = "DE-HA-{n:03d}"
name = "Routing test {n}"
latitude = 52.5
longitude = 13.4
cpo_id = "DE*CPO"
is_open_24 = true
contact = {{ phone = "+49 30 1234567" }}
address = {{ street = "Teststraße", street_number = "{n}", city = "Berlin", zip = "10178", country = "DE" }}

[[station.connector]]
evse_id = "DE*CPO*E9{n:03d}*1"
type = "Type2"
speed_kw = 22.0
charge_point = "{cp_id}"
connector = 1
"""
        for n, cp_id in enumerate(CHARGERS, 1)
    ]
    return "".join(blocks)


class Rig:
    """Two gateway nodes behind one HAProxy, and the chargers that connect through it."""

    def __init__(self, gateways: list[Gateway]) -> None:
        self.gateways = gateways
        self.chargers: list[SimCharger] = []
        self._proxy: Haproxy | None = None
        self._running: list[int] = []

    @property
    def proxy(self) -> Haproxy:
        assert self._proxy is not None, "no HAProxy yet"
        return self._proxy

    def attach(self, proxy: Haproxy) -> None:
        self._proxy = proxy
        url = proxy.url("chargers", "/ocpp")
        self.chargers = [SimCharger(cp_id, url, call_timeout=10) for cp_id in CHARGERS]

    async def start_nodes(self) -> None:
        for index, gateway in enumerate(self.gateways):
            await gateway.start()
            self._running.append(index)

    async def stop_node(self, index: int) -> None:
        """Stop a node as SIGTERM does (its chargers get close code 1012)."""
        if index in self._running:
            self._running.remove(index)
            await self.gateways[index].stop()
            assert self.gateways[index].tasks.failures == 0, "a background task failed"

    async def stop_nodes(self) -> None:
        for index in list(self._running):
            await self.stop_node(index)

    def placement(self) -> dict[str, int]:
        """Which node (index) holds each charger's connection; a charger on both fails."""
        where: dict[str, int] = {}
        for index, gateway in enumerate(self.gateways):
            assert gateway.csms is not None
            for cp_id in gateway.csms.connections:
                assert cp_id not in where, f"{cp_id} is connected to two nodes"
                where[cp_id] = index
        return where

    def connection(self, node: int, cp_id: str) -> object:
        csms = self.gateways[node].csms
        assert csms is not None
        return csms.connections[cp_id]

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Poll every 50 ms, at most WAIT_S; fail naming `what`, with HAProxy's log."""
        for _ in range(int(WAIT_S / 0.05)):
            if predicate():
                return
            await asyncio.sleep(0.05)
        if not predicate():
            raise AssertionError(f"not {what} after {WAIT_S} s; haproxy:\n{self.proxy.log_text()}")

    async def until_status(self, backend: str, node: str, status: str) -> None:
        await self.until(
            lambda: self.proxy.status(backend, node) == status, f"{backend}/{node} {status}"
        )

    async def connect(self, chargers: list[SimCharger]) -> None:
        """Connect and boot them, then wait until a node holds each."""
        await asyncio.gather(*(cp.connect() for cp in chargers))
        assert all(cp.boot_status == "Accepted" for cp in chargers)
        ids = {cp.charge_point_id for cp in chargers}
        await self.until(lambda: ids <= self.placement().keys(), "connected to a node")

    async def close(self, chargers: list[SimCharger]) -> None:
        await asyncio.gather(*(cp.close() for cp in chargers))
        ids = {cp.charge_point_id for cp in chargers}
        await self.until(lambda: not ids & self.placement().keys(), "gone from the nodes")


def _stations_file(directory: Path) -> Path:
    path = directory / "routing-stations.toml"
    if not path.exists():
        path.write_text(_stations(), encoding="utf-8")
    return path


def _node(name: str, gateway: Gateway) -> Node:
    assert gateway.csms is not None and gateway.oioi is not None
    # /healthz is served on the OIOI port (no [admin] table here), as the example checks it.
    port = gateway.oioi.port
    return Node(name, ocpp_port=gateway.csms.port, oioi_port=port, health_port=port)


@pytest.fixture
async def rig(
    tmp_path: Path, emp: SandboxEmp, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    monkeypatch.delenv(STORAGE_URL_ENV, raising=False)  # single nodes: SQLite on either backend
    gateways = []
    for name in ("node1", "node2"):
        directory = tmp_path / name
        directory.mkdir()
        path = write_config(directory, emp_url=emp.url, stations=_stations_file(tmp_path))
        gateways.append(Gateway(load_config(path, {})))
    rig = Rig(gateways)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(rig.stop_nodes)
        await rig.start_nodes()
        proxy = Haproxy(
            [_node(f"node{i}", g) for i, g in enumerate(gateways, 1)], tmp_path / "haproxy"
        )
        proxy.start()
        stack.callback(proxy.stop)
        rig.attach(proxy)
        stack.push_async_callback(rig.close, rig.chargers)
        for backend in ("chargers", "oioi"):
            for node in ("node1", "node2"):
                await rig.until_status(backend, node, "UP")
        yield rig


async def test_a_charger_lands_on_the_same_node_and_moves_only_when_its_node_fails(
    rig: Rig,
) -> None:
    chargers = rig.chargers
    await rig.connect(chargers)
    first = rig.placement()
    assert set(first.values()) == {0, 1}, f"the hash put every charger on one node: {first}"

    # The same node at every reconnect, whatever the order and company: all of them one by one
    # in reverse order, then one charger alone, again and again (round-robin would move it).
    await rig.close(chargers)
    for cp in reversed(chargers):
        await rig.connect([cp])
    assert rig.placement() == first
    for _ in range(4):
        await rig.close(chargers[:1])
        await rig.connect(chargers[:1])
        assert rig.placement() == first

    # node1's /healthz answers 503 (it stops accepting, as when it drains).
    on_node1 = [cp for cp in chargers if first[cp.charge_point_id] == 0]
    kept = {cp: rig.connection(1, cp) for cp, node in first.items() if node == 1}
    node1 = rig.gateways[0].oioi
    assert node1 is not None
    await node1.stop_accepting()
    await rig.until_status("chargers", "node1", "DOWN")
    assert rig.proxy.status("chargers", "node2") == "UP"
    assert "Server chargers/node1 is DOWN" in rig.proxy.log_text()

    # HAProxy closes node1's tunnels (on-marked-down shutdown-sessions); those chargers
    # reconnect through it and land on node2. node2's chargers keep their connections.
    await rig.until(lambda: not any(cp.connected for cp in on_node1), "node1's chargers cut")
    await rig.connect(on_node1)
    assert rig.placement() == dict.fromkeys(CHARGERS, 1)
    assert all(rig.connection(1, cp) is conn for cp, conn in kept.items())

    # node1 healthy again: HAProxy marks it up, and a charger that reconnects from then on is
    # back on the node its id hashes to.
    node1.accepting = True
    await rig.until_status("chargers", "node1", "UP")
    await rig.close(chargers)
    await rig.connect(chargers)
    assert rig.placement() == first


async def test_a_draining_nodes_chargers_reconnect_to_the_other(rig: Rig) -> None:
    """SIGTERM's path: the gateway closes its chargers with 1012 and stops listening; they
    reconnect at once, before a health check may have noticed, and still reach node2."""
    chargers = rig.chargers
    await rig.connect(chargers)
    first = rig.placement()
    on_node1 = [cp for cp in chargers if first[cp.charge_point_id] == 0]
    kept = {cp: rig.connection(1, cp) for cp, node in first.items() if node == 1}
    await rig.stop_node(0)
    await rig.until(lambda: not any(cp.connected for cp in on_node1), "node1's chargers closed")
    assert {cp.close_code for cp in on_node1} == {1012}
    await rig.connect(on_node1)
    assert rig.placement() == dict.fromkeys(CHARGERS, 1)
    assert all(rig.connection(1, cp) is conn for cp, conn in kept.items())
    await rig.until_status("chargers", "node1", "DOWN")


async def test_a_node_set_to_drain_keeps_its_chargers_and_takes_no_new_ones(rig: Rig) -> None:
    chargers = rig.chargers
    await rig.connect(chargers)
    first = rig.placement()
    kept = {cp: rig.connection(node, cp) for cp, node in first.items()}
    rig.proxy.set_state("node1", "drain")
    await rig.until_status("chargers", "node1", "DRAIN")
    assert all(rig.connection(first[cp], cp) is conn for cp, conn in kept.items())
    on_node1 = [cp for cp in chargers if first[cp.charge_point_id] == 0]
    await rig.close(on_node1)
    await rig.connect(on_node1)
    assert rig.placement() == dict.fromkeys(CHARGERS, 1)
    rig.proxy.set_state("node1", "ready")
    await rig.until_status("chargers", "node1", "UP")
    await rig.close(on_node1)
    await rig.connect(on_node1)
    assert rig.placement() == first


async def test_emp_requests_go_round_robin_and_skip_a_node_marked_down(rig: Rig) -> None:
    proxy = rig.proxy

    def served() -> list[int]:
        return [int(proxy.server("oioi", n)["stot"]) for n in ("node1", "node2")]

    async def get_healthz(times: int) -> list[int]:
        before = served()
        async with aiohttp.ClientSession() as http:
            for _ in range(times):
                async with http.get(proxy.url("oioi", "/healthz")) as response:
                    assert response.status == 200, await response.text()
        return [a - b for a, b in zip(served(), before, strict=True)]

    assert await get_healthz(6) == [3, 3]
    node1 = rig.gateways[0].oioi
    assert node1 is not None
    await node1.stop_accepting()
    await rig.until_status("oioi", "node1", "DOWN")
    assert await get_healthz(4) == [0, 4]


def test_the_example_renders_for_three_local_nodes_and_haproxy_accepts_it(tmp_path: Path) -> None:
    nodes = [
        Node(f"node{i}", ocpp_port=9000 + i, oioi_port=8080 + i, health_port=8090 + i,
             ocpi_port=8070 + i)
        for i in (1, 2, 3)
    ]  # fmt: skip
    proxy = Haproxy(nodes, tmp_path)
    assert "Configuration file is valid" in proxy.check()
    text = proxy.config_text
    chargers = text.split("backend chargers", 1)[1].split("frontend", 1)[0]
    # The example's routing, untouched: a consistent hash of the path, tunnels kept an hour,
    # a node marked down loses its chargers' sessions.
    for kept in (
        "balance uri path-only",
        "hash-type consistent",
        "timeout tunnel 1h",
        "on-marked-down shutdown-sessions",
        "http-check send meth GET uri /healthz",
    ):
        assert kept in chargers, kept  # fmt: skip
    assert [line.split()[1:] for line in chargers.splitlines() if "server node" in line] == [
        [f"node{i}", f"127.0.0.1:{9000 + i}", "port", str(8090 + i)] for i in (1, 2, 3)
    ]
    assert f"server node2 127.0.0.1:{8072} port 8092" in text.split("backend ocpi", 1)[1]
    assert "inter 200ms fall 2 rise 1" in chargers and "10.0.0." not in text
    assert sorted(proxy.ports) == ["chargers", "ocpi", "oioi"]
    assert f"stats socket {tmp_path / 'admin.sock'}" in text

    without_ocpi = Haproxy([Node("a", 1, 2, 3)], tmp_path / "plain")
    assert "backend ocpi" not in without_ocpi.config_text and sorted(without_ocpi.ports) == [
        "chargers",
        "oioi",
    ]
    without_ocpi.check()
