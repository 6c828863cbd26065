"""The gateway process's runtime: paced garbage collection and the capped selector."""

from __future__ import annotations

import asyncio
import gc
import re
import selectors
import socket
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpo_gateway import runtime
from cpo_gateway.app import Gateway
from cpo_gateway.config import load_config
from cpo_gateway.runtime import Collector
from cpo_gateway.sim.emp.sandbox import SandboxEmp
from tests.conftest import write_config


class Clocks:
    """Wall and CPU clocks the test moves by hand."""

    def __init__(self) -> None:
        self.wall = 1000.0
        self.cpu = 10.0

    def advance(self, wall_s: float, cpu_share: float) -> None:
        self.wall += wall_s
        self.cpu += wall_s * cpu_share


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def collector(clocks: Clocks) -> Iterator[Collector]:
    c = Collector(
        check_s=5.0, min_growth=1_000, max_interval_s=600.0,
        clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu,
    )  # fmt: skip
    c.install()
    try:
        yield c
    finally:
        c.uninstall()


def _cycles(n: int) -> None:
    """n pairs of objects that only refer to each other, old by the time they become garbage
    (like a closed connection): only a full pass frees them."""
    holder = []
    for _ in range(n):
        a: dict[str, object] = {}
        b: dict[str, object] = {"a": a}
        a["b"] = b
        holder.append(a)
    gc.collect(1)  # survivors of the young generations move to the oldest
    holder.clear()


def test_install_freezes_startup_and_turns_off_automatic_full_collections() -> None:
    saved = gc.get_threshold()
    c = Collector()
    c.install()
    try:
        assert gc.get_freeze_count() > 0
        young0, young1, old = gc.get_threshold()
        assert (young0, young1) == saved[:2] and old > 1_000_000
    finally:
        c.uninstall()
    assert gc.get_threshold() == saved and gc.get_freeze_count() == 0


def test_a_full_collection_waits_for_growth(collector: Collector, clocks: Clocks) -> None:
    clocks.advance(5.0, cpu_share=0.0)
    assert not collector.due(clocks.wall, 0.0, collector._after_last + 10)
    assert collector.due(clocks.wall, 0.0, collector._after_last + 5_000)


def test_a_busy_process_is_collected_only_after_the_longest_interval(
    collector: Collector, clocks: Clocks
) -> None:
    grown = collector._after_last + 5_000
    clocks.advance(60.0, cpu_share=0.9)
    assert not collector.due(clocks.wall, 0.9, grown), "busy and collected a minute ago"
    clocks.advance(600.0, cpu_share=0.9)
    assert collector.due(clocks.wall, 0.9, grown), "busy, but ten minutes since the last pass"


def test_a_quiet_check_collects_cycles_left_behind(collector: Collector, clocks: Clocks) -> None:
    _cycles(20_000)
    clocks.advance(5.0, cpu_share=0.01)
    assert collector.check() is True
    s = collector.stats
    assert s.full_collections == 1 and s.last_collected >= 40_000
    assert s.longest_pause_ms == s.last_pause_ms > 0.0
    # Nothing new since: the next quiet check has nothing worth a pass.
    clocks.advance(5.0, cpu_share=0.01)
    assert collector.check() is False and s.full_collections == 1


def test_a_busy_check_leaves_the_cycles_for_later(collector: Collector, clocks: Clocks) -> None:
    _cycles(20_000)
    clocks.advance(5.0, cpu_share=0.95)
    assert collector.check() is False and collector.stats.full_collections == 0


class _Node:
    """An object that can be in a cycle and be watched through a weak reference."""

    other: object = None


def _young_cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def no_automatic_young_passes() -> Iterator[None]:
    gc.disable()  # only the collector's own passes below
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_automatic_young_passes")
def test_young_passes_are_paced(collector: Collector, clocks: Clocks) -> None:
    generations: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    gc.callbacks.append(watch)
    try:
        first = _young_cycle()
        clocks.advance(2 * collector.young_interval_s, cpu_share=1.0)
        collector.young_pass()
        assert first() is None, "young cyclic garbage is collected"
        second = _young_cycle()
        collector.young_pass()  # too soon after the last one
        assert second() is not None and collector.stats.young_collections == 1
        for _ in range(runtime._MIDDLE_EVERY - 1):
            clocks.advance(2 * collector.young_interval_s, cpu_share=1.0)
            collector.young_pass()
        assert second() is None
    finally:
        gc.callbacks.remove(watch)
    assert collector.stats.young_collections == runtime._MIDDLE_EVERY
    assert generations == [0] * (runtime._MIDDLE_EVERY - 1) + [1], "the middle one in turn"


@pytest.mark.skipif(not hasattr(selectors, "EpollSelector"), reason="epoll is Linux only")
def test_the_event_loop_runs_young_passes_only_while_a_collector_is_installed() -> None:
    collector = Collector(young_interval_s=0.0)

    async def spin() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    loop = runtime.new_event_loop()
    try:
        loop.run_until_complete(spin())
        assert collector.stats.young_collections == 0
        collector.install()
        try:
            loop.run_until_complete(spin())
        finally:
            collector.uninstall()
        passes = collector.stats.young_collections
        assert passes >= 20, "one before each poll"
        loop.run_until_complete(spin())
        assert collector.stats.young_collections == passes
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(selectors, "EpollSelector"), reason="epoll is Linux only")
def test_the_selector_reports_a_bounded_batch_and_the_rest_on_the_next_poll() -> None:
    loop = runtime.new_event_loop()
    pairs = [socket.socketpair() for _ in range(100)]
    try:
        selector = loop._selector  # type: ignore[attr-defined]
        for r, w in pairs:
            selector.register(r, selectors.EVENT_READ)
            w.send(b"x")
        seen: set[int] = set()
        for _ in range(10):
            batch = selector.select(0)
            assert 0 < len(batch) <= runtime._MAX_EVENTS
            for key, _ in batch:
                key.fileobj.recv(1)
                selector.unregister(key.fileobj)
                seen.add(key.fd)
            if len(seen) == len(pairs):
                break
        assert len(seen) == len(pairs), "every ready socket is reported in the end"
    finally:
        for r, w in pairs:
            r.close()
            w.close()
        loop.close()


@pytest.mark.skipif(not hasattr(selectors, "EpollSelector"), reason="epoll is Linux only")
def test_run_uses_the_gateway_event_loop() -> None:
    async def selector_name() -> str:
        loop = asyncio.get_running_loop()
        return type(getattr(loop, "_selector", loop)).__name__

    assert runtime.run(selector_name()) == "_CappedEpollSelector"


async def test_a_gateway_with_paced_collection_reports_it(tmp_path: Path, emp: SandboxEmp) -> None:
    saved = gc.get_threshold()
    cfg = load_config(write_config(tmp_path, emp_url=emp.url), {})
    gateway = Gateway(cfg, collector=Collector(check_s=3600.0))  # only the pass below
    await gateway.start()
    try:
        assert gc.get_threshold()[2] > 1_000_000
        assert gateway.collector is not None
        gateway.collector.collect()
        gateway.collector.young_pass()
        text = await gateway.metrics()
    finally:
        await gateway.stop()
    assert "cpo_gateway_gc_full_collections_total 1.0" in text
    young = re.search(r"^cpo_gateway_gc_young_collections_total (\S+)$", text, re.M)
    assert young is not None and float(young.group(1)) >= 1
    assert 'cpo_gateway_gc_pause_seconds{which="longest"}' in text
    assert gc.get_threshold() == saved, "stopping gives the process its own collector back"
