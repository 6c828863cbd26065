"""The storage ports: split by consumer, all implemented by the concrete store."""

from __future__ import annotations

import inspect

from cpo_gateway.bridge import storage
from cpo_gateway.bridge.storage import OpsStore, SecurityStore, StorePort
from cpo_gateway.store import Store

PORTS = [
    obj
    for name, obj in vars(storage).items()
    if inspect.isclass(obj) and name.endswith(("Store", "Reads", "Port"))
]


def _members(port: type) -> set[str]:
    return {n for n in dir(port) if not n.startswith("_") and callable(getattr(port, n))}


def as_ports(store: Store) -> tuple[StorePort, OpsStore, SecurityStore]:
    """Type-checked by mypy: the concrete store is every port the core and the tools use."""
    return store, store, store


def test_the_concrete_store_has_every_method_of_every_port() -> None:
    assert len(PORTS) >= 10
    for port in PORTS:
        missing = _members(port) - set(dir(Store))
        assert not missing, f"{port.__name__}: {sorted(missing)}"


def test_each_consumer_port_is_small() -> None:
    # A fake of one consumer's port stays a few methods; only the unions are large.
    for port in PORTS:
        if port in (StorePort, OpsStore):
            continue
        assert len(_members(port)) <= 10, port.__name__
    assert _members(StorePort).isdisjoint(_members(OpsStore))
