"""`cpo-gateway ocpi partners|token-a NAME|register NAME`: OCPI partners and their handshake.

`token-a` prints a one-time token A for a partner that registers with us (only its digest is
stored: print it once, hand it over out of band). `register` runs the handshake with a
partner whose versions URL and token A are configured, as the gateway does at start.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.bridge.ports import OutboxState
from cpo_gateway.config import Config
from cpo_gateway.store import Store

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 64
EXIT_CONFIG = 78


def add_parser(
    sub: Any,
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
    leaf: Callable[..., argparse.ArgumentParser],
) -> None:
    oc = with_config(sub.add_parser("ocpi", help="OCPI partners: registration, token A"))
    ocs = oc.add_subparsers(dest="ocpi_cmd", required=True)
    leaf(ocs, "partners", help="each OCPI partner: registration, endpoints, outbox")
    ta = leaf(ocs, "token-a", help="issue a one-time token A for a partner to register with")
    ta.add_argument("name", metavar="NAME")
    rg = leaf(ocs, "register", help="register with a partner now (its versions_url, token_a)")
    rg.add_argument("name", metavar="NAME")
    oc.set_defaults(fn=cmd_ocpi)


def cmd_ocpi(args: argparse.Namespace) -> int:
    from cpo_gateway.cli import _with_store

    handlers = {"partners": _partners, "token-a": _token_a, "register": _register}
    return _with_store(args, handlers[args.ocpi_cmd])


def _base_url(cfg: Config) -> str:
    assert cfg.ocpi is not None
    if cfg.ocpi.base_url:
        return cfg.ocpi.base_url
    return f"http://{cfg.ocpi.host}:{cfg.ocpi.port}/ocpi/cpo"


def _needs_ocpi(cfg: Config, name: str | None = None) -> str | None:
    if cfg.ocpi is None:
        return f"{cfg.path}: no [ocpi] table: the gateway speaks no OCPI"
    if name is not None and name not in {e.name for e in cfg.ocpi_emps}:
        known = ", ".join(e.name for e in cfg.ocpi_emps) or "none"
        return f'{name}: not an [[emp]] with protocol = "ocpi" (OCPI partners: {known})'
    return None


async def _partners(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    problem = _needs_ocpi(cfg)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_CONFIG
    stats = await store.outbox_stats(time.time())
    print("partner\tstate\tsince\tdirection\tversions_url\tendpoints\tpending\tdead\tlast_error")
    for emp in cfg.ocpi_emps:
        link = await store.link(emp.name)
        state = link.state.value if link else LinkState.UNREGISTERED.value
        since = rfc3339(link.updated_at) if link and link.updated_at else "-"
        direction = "we register" if emp.token_a else "it registers"
        url = (link.peer_url if link else None) or emp.versions_url or "-"
        endpoints = link.details.get("endpoints", {}) if link else {}
        names = ",".join(sorted(endpoints)) if isinstance(endpoints, dict) else ""
        mine = [s for s in stats if s.emp == emp.name]
        pending = sum(s.depth for s in mine if s.state is OutboxState.PENDING)
        dead = sum(s.depth for s in mine if s.state is OutboxState.DEAD)
        error = (link.last_error if link else None) or "-"
        print(
            f"{emp.name}\t{state}\t{since}\t{direction}\t{url}\t{names or '-'}\t"
            f"{pending}\t{dead}\t{error}"
        )
    return EXIT_OK


def _registrar(store: Store, cfg: Config) -> Any:
    from cpo_gateway.app import ocpi_parts

    built = ocpi_parts(cfg, store, lambda: _base_url(cfg))
    assert built is not None
    return built


async def _handshake(
    store: Store, cfg: Config, name: str, work: Callable[[Any], Awaitable[T]]
) -> T | int:
    """`work(registrar)` for an OCPI partner, or the exit code of why it could not run."""
    from cpo_gateway.ocpi.registration import RegistrationFailed

    problem = _needs_ocpi(cfg, name)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    client, registrar = _registrar(store, cfg)
    try:
        return await work(registrar)
    except RegistrationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await client.close()


async def _token_a(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    token = await _handshake(store, cfg, args.name, lambda r: r.issue_token_a(args.name))
    if isinstance(token, int):
        return token
    print(f"token A for {args.name} (shown once; it is void once used):", file=sys.stderr)
    print(token)
    print(f"versions URL: {_base_url(cfg)}/versions", file=sys.stderr)
    return EXIT_OK


async def _register(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    link = await _handshake(store, cfg, args.name, lambda r: r.register(args.name))
    if isinstance(link, int):
        return link
    endpoints = link.details.get("endpoints", {})
    print(f"{args.name}: registered ({len(endpoints)} endpoints at {link.peer_url})")
    return EXIT_OK
