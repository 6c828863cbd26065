"""The command line: `cpo-gateway run|check-config|demo|charger|chargers|whitelist|outbox|
sessions|ocpi|backup|completion`.

Exceptions map to exit codes (README): 0 ok, 64 usage, 70 crash, 71 cannot listen,
73 state dir not writable, 78 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import NoReturn

import psycopg

from cpo_gateway import __version__, logs, runtime, tlsfiles
from cpo_gateway.bridge.clock import rfc3339
from cpo_gateway.bridge.storage import StorageUnavailable
from cpo_gateway.config import Config, ConfigError, load_config
from cpo_gateway.store import DatabaseUnusable, Store

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_SOFTWARE = 70
EXIT_CANTCREATE = 73
EXIT_CONFIG = 78
DEFAULT_CONFIG = os.environ.get("CPO_GATEWAY_CONFIG", "/etc/cpo-gateway/gateway.toml")

log = logs.get("cpo_gateway.cli")


def _load(path: str) -> Config:
    try:
        return load_config(Path(path))
    except ConfigError as exc:
        print(f"configuration error ({len(exc.problems)}):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    # Decide first, print once: an "ok" followed by an error would leave both on screen.
    try:
        problems, open_ids = asyncio.run(_database_checks(cfg))
    except _UNUSABLE as exc:
        print(f"error: database not usable: {exc}", file=sys.stderr)
        return EXIT_CANTCREATE
    if problems:
        print(f"configuration error ({len(problems)}):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    cat = cfg.catalogue
    connectors = list(cat.connectors())
    print(f"ok: {cfg.path}")
    print(f"  stations:   {len(cat.stations)} ({cfg.gateway.stations_file})")
    print(f"  connectors: {len(connectors)} on {len({c.evse_id for c in connectors})} EVSE IDs")
    print(f"  chargers:   {len(cat.charge_point_ids())}")
    emps = ", ".join(f"{e.name}: {e.protocol}" for e in cfg.emps) or "none"
    print(f"  EMPs:       {len(cfg.emps)} ({emps})")
    scheme = "wss" if cfg.ocpp.tls else "ws"
    print(
        f"  OCPP:       {scheme}://{cfg.ocpp.host}:{cfg.ocpp.port}{cfg.ocpp.path}/<charge point id>"
    )
    print(f"  OIOI:       http://{cfg.oioi.host}:{cfg.oioi.port}{cfg.oioi.path}")
    if cfg.ocpi is not None:
        base = cfg.ocpi.base_url or f"http://{cfg.ocpi.host}:{cfg.ocpi.port}/ocpi/cpo"
        print(
            f"  OCPI:       {base}/versions as {cfg.ocpi.country_code}*{cfg.ocpi.party_id}, "
            f"{len(cfg.ocpi_emps)} partner(s)"
        )
    print(f"  state:      {cfg.storage.describe}")
    certs = cfg.ocpp.client_certs
    if certs.signing_ca_cert is not None and certs.signing_ca_key is not None:
        summary = tlsfiles.signing_summary(certs.signing_ca_cert, certs.signing_ca_key_passphrase)
        print(f"  CSR signer: {summary}")
    if open_ids:
        print(
            f"warning: {len(open_ids)} charger(s) on security profile 0 without a password, "
            f"anyone knowing the id can take over the connection (use security_profile = 1 or "
            f"higher in {cfg.gateway.stations_file}): {', '.join(open_ids)}",
            file=sys.stderr,
        )
    return EXIT_OK


async def _database_checks(cfg: Config) -> tuple[list[str], list[str]]:
    """(EMPs of a protocol this build does not serve, stations that cannot be OCPI
    Locations when OCPI partners are configured, and stations whose connectors differ
    from what an EMP that forbids it already has; chargers anyone may connect as: security
    profile 0 and no password in the database)."""
    from cpo_gateway.partners import partner_terms, unserved

    problems = [
        f"{cfg.path}: [[emp]] {name}: no adapter in this build serves that protocol"
        for name in unserved(cfg.emps)
    ]
    if cfg.ocpi_emps:
        from cpo_gateway.ocpi.locations import ocpi_problems

        problems.extend(f"{cfg.gateway.stations_file}: {p}" for p in ocpi_problems(cfg.catalogue))
    cat = cfg.catalogue
    unprotected = [
        cp
        for cp in sorted(cat.charge_point_ids())
        if (auth := cat.charger_auth(cp)) is None
        or (auth.security_profile == 0 and not auth.password_hash)
    ]
    sqlite_path = cfg.storage.sqlite_path
    if sqlite_path is not None and not sqlite_path.exists():
        return problems, unprotected
    from cpo_gateway.bridge.station_sync import changed_connectors
    from cpo_gateway.store import Store, open_database

    db = open_database(cfg.storage)
    try:
        await db.open()
        store = Store(db)
        for emp in cfg.emps:
            if not partner_terms(emp).fixed_connectors:
                continue
            for p in changed_connectors(cfg.catalogue, await store.posted_stations(emp.name)):
                problems.append(f"{cfg.gateway.stations_file}: {p} (EMP {emp.name})")
        return problems, [cp for cp in unprotected if not await store.password_hash(cp)]
    finally:
        await db.close()


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    logs.configure(cfg.logging.level, cfg.logging.format)
    from cpo_gateway.app import Gateway, ServiceDied, StartupError

    async def main() -> int:
        shutdown = asyncio.Event()
        gateway = Gateway(cfg, collector=runtime.Collector() if tuned else None)
        _install_signals(shutdown, gateway.request_reload)
        try:
            await gateway.run(shutdown)
        except StartupError as exc:
            log.error("gateway.start_failed", error=str(exc), exit_code=exc.exit_code)
            return exc.exit_code
        except ServiceDied as exc:
            return exc.exit_code
        return EXIT_OK

    tuned = runtime.tuning_enabled()
    if not tuned:
        log.warning("runtime.tuning_off", env=runtime.TUNING_ENV)
    return runtime.run(main(), tuned=tuned)


def _install_signals(shutdown: asyncio.Event, reload: Callable[[], None]) -> None:
    """SIGTERM and SIGINT stop the gateway (a second SIGINT forces the exit); SIGHUP reloads
    the stations file, the log level and charger passwords."""
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def on_signal(signame: str) -> None:
        hits["n"] += 1
        if hits["n"] > 1 and signame == "SIGINT":
            log.warning("gateway.forced_exit")
            os._exit(130)
        log.info("gateway.signal", signal=signame)
        shutdown.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)

    def on_hangup() -> None:
        log.info("gateway.signal", signal="SIGHUP")
        reload()

    loop.add_signal_handler(signal.SIGHUP, on_hangup)


# A database the command cannot use (store.DatabaseUnusable, or damage SQLite finds later
# in a query, or PostgreSQL gone) is one line and 73, never a traceback.
_UNUSABLE = (DatabaseUnusable, StorageUnavailable, sqlite3.DatabaseError, psycopg.OperationalError)


def _with_store(
    args: argparse.Namespace, fn: Callable[[Store, Config, argparse.Namespace], Awaitable[int]]
) -> int:
    cfg = _load(args.config)
    from cpo_gateway.store import open_database

    async def main() -> int:
        db = open_database(cfg.storage)
        await db.open()
        try:
            return await fn(Store(db), cfg, args)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except _UNUSABLE as exc:
        print(f"error: database not usable: {exc}", file=sys.stderr)
        return EXIT_CANTCREATE


def cmd_charger(args: argparse.Namespace) -> int:
    from cpo_gateway.csms.passwords import hash_password

    if args.charger_cmd == "hash-password":
        print(hash_password(_read_password(args)))
        return EXIT_OK
    if args.charger_cmd == "local-list":
        return _with_store(args, _show_local_lists)

    async def set_pw(store: Store, cfg: Config, args: argparse.Namespace) -> int:
        if args.id not in cfg.catalogue.charge_point_ids():
            print(f"warning: {args.id} is not in {cfg.gateway.stations_file}", file=sys.stderr)
        await store.set_password_hash(args.id, hash_password(_read_password(args)))
        print(f"password set for {args.id}")
        return EXIT_OK

    return _with_store(args, set_pw)


async def _show_local_lists(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    """Per charger: the whitelist version it holds, how the last push went, what comes next."""
    import time

    from cpo_gateway.bridge.locallist import ListState, list_state
    from cpo_gateway.bridge.ports import LocalListRecord

    version = await store.whitelist_version()
    now = time.time()
    records = {r.charge_point: r for r in await store.local_list_records()}
    for cp_id in cfg.catalogue.charge_point_ids():
        records.setdefault(cp_id, LocalListRecord(cp_id))
    nxt = {
        ListState.CURRENT: "-",
        ListState.BEHIND: "due",
        ListState.GAVE_UP: "gave up until the whitelist changes or the charger reconnects",
        ListState.DISABLED: "not until the charger reconnects (local list switched off)",
        ListState.NOT_SUPPORTED: "never (no local list)",
    }
    print(f"whitelist version {version}")
    print(
        "charger\tholds\tlist_version\tstate\tlast_result\tfailures\tlast_try\tnext_retry\tdetail"
    )
    for cp_id in sorted(records):
        r = records[cp_id]
        state = list_state(r, version, now)
        retry = rfc3339(r.next_at) if state is ListState.BACKING_OFF and r.next_at else nxt[state]
        tried = rfc3339(r.tried_at) if r.tried_at else "-"
        print(
            f"{cp_id}\t{r.version}\t{r.ocpp_version}\t{state.value}\t{r.result or '-'}\t"
            f"{r.failures}\t{tried}\t{retry}\t{r.detail}"
        )
    return EXIT_OK


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
    if len(password) < 16:
        # OCPP 1.6 security whitepaper: AuthorizationKey is 16-40 characters.
        print("error: the password must be at least 16 characters", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return password


def cmd_credential(args: argparse.Namespace) -> int:
    """Write a key file for LoadCredential=: read without echo (or from stdin when piped),
    refused when empty, written whole with mode 0600 or not at all."""
    target = Path(args.path)
    if not target.parent.is_dir():
        print(f"error: {target.parent} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    if sys.stdin.isatty():
        key = getpass.getpass(f"key for {target.name}: ")
    else:
        key = sys.stdin.readline().rstrip("\r\n")
    key = key.strip()
    if not key:
        print(f"error: empty key: {target} not written", file=sys.stderr)
        return EXIT_USAGE
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing temporary file keeps its mode otherwise
        os.write(fd, key.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)  # atomic: the service never reads half a key
    print(f"wrote {target} ({len(key)} characters, mode 0600)")
    return EXIT_OK


def cmd_whitelist(args: argparse.Namespace) -> int:
    async def run(store: Store, cfg: Config, args: argparse.Namespace) -> int:
        from cpo_gateway.bridge.ids import try_normalise_uid

        if args.wl_cmd == "count":
            counts = await store.whitelist_counts()
            for emp in cfg.emps:
                print(f"{emp.name}\t{counts.get(emp.name, 0)}")
            return EXIT_OK
        if args.wl_cmd == "show":
            for partner, listed in await store.whitelist_page(args.emp, args.limit):
                print(f"{partner}\t{listed}")
            return EXIT_OK
        uid = try_normalise_uid(args.uid)
        if uid is None:
            print(f"{args.uid!r} is not a UID (hex, at most 20 characters)", file=sys.stderr)
            return EXIT_USAGE
        partners = await store.whitelist_partners(uid)
        print(f"{uid}: " + (", ".join(partners) if partners else "not whitelisted"))
        return EXIT_OK if partners else 1

    return _with_store(args, run)


def cmd_outbox(args: argparse.Namespace) -> int:
    from cpo_gateway import cli_outbox

    return cli_outbox.cmd_outbox(args)


def cmd_sessions(args: argparse.Namespace) -> int:
    from cpo_gateway import cli_review

    if args.ss_cmd in cli_review.REVIEW_COMMANDS:
        return cli_review.cmd_sessions_review(args)

    async def run(store: Store, cfg: Config, args: argparse.Namespace) -> int:
        if args.ss_cmd == "close":
            from cpo_gateway.app import offline_core

            result = await offline_core(cfg, store).close_session(args.id, args.reason)
            print(f"{args.id}: {result.detail}", file=sys.stdout if result.closed else sys.stderr)
            return EXIT_OK if result.closed else 1
        from cpo_gateway.cli_tables import session_table

        print(session_table(await store.session_rows(args.limit, args.state), tsv=args.tsv))
        return EXIT_OK

    return _with_store(args, run)


def cmd_demo(args: argparse.Namespace) -> int:
    from cpo_gateway.sim.demo import run_demo

    return run_demo(keep_running=not args.once)


class _Parser(argparse.ArgumentParser):
    """argparse, exiting with 64 (EX_USAGE) on a usage error instead of its own 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    # Subparsers are made of the same class, so every level exits with 64.
    p = _Parser(prog="cpo-gateway", description="OCPP <-> OIOI gateway for charge point operators")
    p.add_argument("--version", action="version", version=f"cpo-gateway {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})"
        )
        return sp

    def leaf(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str = ""
    ) -> argparse.ArgumentParser:
        """A second-level command that also takes -c after its own name."""
        sp = parent.add_parser(name, help=help or None)
        sp.add_argument("-c", "--config", default=argparse.SUPPRESS, help="config file")
        return sp

    with_config(sub.add_parser("run", help="run the gateway")).set_defaults(fn=cmd_run)
    with_config(
        sub.add_parser("check-config", help="validate the config and stations files")
    ).set_defaults(fn=cmd_check_config)
    demo = sub.add_parser("demo", help="play the whole story on loopback with simulated peers")
    demo.add_argument(
        "--once", action="store_true", help="stop after the story instead of waiting for Ctrl-C"
    )
    demo.set_defaults(fn=cmd_demo)

    ch = with_config(sub.add_parser("charger", help="charger credentials"))
    chs = ch.add_subparsers(dest="charger_cmd", required=True)
    sp = leaf(chs, "set-password", help="store a salted hash of a charger's password")
    sp.add_argument("id")
    sp.add_argument("--password-stdin", action="store_true")
    hp = leaf(chs, "hash-password", help="print a hash for the stations file")
    hp.add_argument("--password-stdin", action="store_true")
    leaf(chs, "local-list", help="per charger: whitelist version held, last push, next retry")
    from cpo_gateway import admin_cli

    admin_cli.add_parser(chs)
    from cpo_gateway import cli_security

    cli_security.add_parsers(chs, leaf)
    ch.set_defaults(fn=cmd_charger)

    cr = sub.add_parser("credential", help="key files for the service's credentials")
    crs = cr.add_subparsers(dest="credential_cmd", required=True)
    cw = crs.add_parser("write", help="write a key read from the terminal or stdin (mode 0600)")
    cw.add_argument("path", help="e.g. /etc/cpo-gateway/credentials/emp-api-key")
    cr.set_defaults(fn=cmd_credential)

    wl = with_config(sub.add_parser("whitelist", help="inspect the RFID whitelist"))
    wls = wl.add_subparsers(dest="wl_cmd", required=True)
    leaf(wls, "count")
    show = leaf(wls, "show")
    show.add_argument("--emp")
    show.add_argument("--limit", type=int, default=100)
    check = leaf(wls, "check")
    check.add_argument("uid")
    wl.set_defaults(fn=cmd_whitelist)

    ob = with_config(sub.add_parser("outbox", help="inspect and re-queue messages owed to EMPs"))
    obs = ob.add_subparsers(dest="ob_cmd", required=True)
    ls = leaf(obs, "list")
    which = ls.add_mutually_exclusive_group()
    which.add_argument("--dead", action="store_true", help="only dead letters")
    which.add_argument("--delivered", action="store_true", help="only delivered rows")
    ls.add_argument("--limit", type=int, default=100)
    sh = leaf(obs, "show", help="one row: payload, times, attempts, last answer")
    sh.add_argument("id", type=int)
    rt = leaf(obs, "retry")
    rt.add_argument("ids", nargs="*", type=int)
    rt.add_argument("--all-dead", action="store_true", help="queue every dead letter again")
    rt.add_argument("--all-pending", action="store_true", help="send every pending row now")
    pg = leaf(obs, "purge")
    pg.add_argument("id", type=int)
    ob.set_defaults(fn=cmd_outbox)

    ss = with_config(sub.add_parser("sessions", help="list and close sessions"))
    sss = ss.add_subparsers(dest="ss_cmd", required=True)
    sl = leaf(sss, "list")
    sl.add_argument("--limit", type=int, default=50)
    sl.add_argument("--state", choices=("pending", "active", "finished", "failed", "needs_review"))
    from cpo_gateway import cli_backup, cli_chargers, cli_completion, cli_review, cli_tables

    cli_tables.add_tsv(sl)
    cli_review.add_review_parsers(sss, leaf)
    sc = leaf(sss, "close", help="end a session the charger will not end (CDR of the energy known)")
    sc.add_argument("id", metavar="SESSION_ID")
    sc.add_argument("--reason", required=True, help="why, kept on the session")
    ss.set_defaults(fn=cmd_sessions)
    cli_chargers.add_parser(sub, with_config, leaf)
    from cpo_gateway import cli_ocpi

    cli_ocpi.add_parser(sub, with_config, leaf)
    cli_backup.add_parser(sub, with_config)
    cli_completion.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        logs.configure("warning", "auto", sys.stderr)
    try:
        return int(args.fn(args))
    except SystemExit:
        raise
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("gateway.crashed")
        return EXIT_SOFTWARE


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
