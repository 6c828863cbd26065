"""The Gateway: the composition root and the lifecycle, nothing else.

Parts start in order (DB, EMP clients, core, OIOI server, OCPP server, jobs, READY=1) and
stop in reverse (STOPPING=1, stop taking OIOI requests, pause jobs, close chargers with 1012,
drain tasks, flush the outbox once, close the HTTP clients, close the DB last).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from cpo_gateway import __version__, logs
from cpo_gateway.bridge.core import Core
from cpo_gateway.bridge.links import LinkState
from cpo_gateway.bridge.ports import EmpLink, OutboxState
from cpo_gateway.bridge.storage import StorageUnavailable
from cpo_gateway.cluster import ClusterNode, NodeSettings
from cpo_gateway.cluster.control import LocalChargers
from cpo_gateway.config import Config, ConfigError, load_config
from cpo_gateway.console.auth import Operator
from cpo_gateway.console.server import ConsoleServer
from cpo_gateway.csms import clientcert
from cpo_gateway.csms.admin import execute as admin_execute
from cpo_gateway.csms.certificates import CertificateSigner
from cpo_gateway.csms.connected import ChargerRegistry
from cpo_gateway.csms.security import CertificateService
from cpo_gateway.csms.server import CsmsServer
from cpo_gateway.httpguard import ListenerLimits
from cpo_gateway.jobs import ONCE_PER_CLUSTER, Jobs
from cpo_gateway.metrics import ClusterFigures, Figures, GatewayMetrics, Parts
from cpo_gateway.ocpi.client import OcpiClient
from cpo_gateway.ocpi.commands_api import CommandsApi
from cpo_gateway.ocpi.delivery import OcpiDeliverer
from cpo_gateway.ocpi.link import OcpiLink, pull_source
from cpo_gateway.ocpi.reads import StoreReads
from cpo_gateway.ocpi.registration import Identity, PartnerSettings, Registrar
from cpo_gateway.ocpi.sender_api import sender_modules
from cpo_gateway.ocpi.server import OcpiModule, OcpiServer
from cpo_gateway.ocpi.token_pull import TokenPuller
from cpo_gateway.ocpi.tokens_api import TokensReceiver
from cpo_gateway.ocpi.transport import Party
from cpo_gateway.oioi.client import EmpClients, Endpoint
from cpo_gateway.oioi.server import InboundPartner, OioiServer
from cpo_gateway.ops import GatewayOps
from cpo_gateway.partners import partners_of, route, series_of, unserved
from cpo_gateway.runtime import Collector
from cpo_gateway.store import (
    Database,
    DatabaseUnreachable,
    DatabaseUnusable,
    Store,
    open_database,
)
from cpo_gateway.systemd import Notifier
from cpo_gateway.tasks import TaskSet

log = logs.get(__name__)


class StartupError(Exception):
    """The gateway cannot start; exit_code says why (see the README's exit codes)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ServiceDied(Exception):
    """A long-lived task ended while the gateway ran: it stopped and exits 70 (a restart by
    systemd brings a whole process back; the outbox and sessions are in the database)."""

    exit_code = 70

    def __init__(self, task: str) -> None:
        super().__init__(f"long-lived task {task} ended")
        self.task = task


EXIT_CANTBIND = 71
EXIT_CANTCREATE = 73
EXIT_TEMPFAIL = 75  # a database not reachable at start: worth starting again
EXIT_CONFIG = 78


def _tls_context(config: Config) -> ssl.SSLContext | None:
    tls = config.ocpp.tls
    if tls is None:
        return None
    return clientcert.server_context(
        tls.cert_file, tls.key_file, config.ocpp.client_certs.client_ca_file
    )


def _signer(config: Config) -> CertificateSigner | None:
    certs = config.ocpp.client_certs
    if certs.signing_ca_cert is None or certs.signing_ca_key is None or not certs.organization:
        return None  # check-config has said why, if only part of it is set
    return CertificateSigner.from_files(
        certs.signing_ca_cert,
        certs.signing_ca_key,
        certs.organization,
        passphrase=certs.signing_ca_key_passphrase,
    )


def _client_cert_policy(config: Config) -> clientcert.ClientCertPolicy | None:
    certs = config.ocpp.client_certs
    if certs.client_ca_file is None or not certs.organization:
        return None
    return clientcert.ClientCertPolicy(
        clientcert.load_ca_bundle(certs.client_ca_file), certs.organization
    )


def _listener_limits(cfg: Config) -> ListenerLimits:
    return ListenerLimits(
        header_timeout_s=cfg.oioi.header_timeout_s,
        body_timeout_s=cfg.oioi.body_timeout_s,
        keepalive_timeout_s=cfg.oioi.keepalive_timeout_s,
        max_connections_per_source=cfg.oioi.max_connections_per_source,
        max_connections=cfg.oioi.max_connections,
    )


def _endpoints(cfg: Config) -> list[Endpoint]:
    return [
        Endpoint(e.name, e.url, e.api_key, e.verify_timeout_s, e.request_timeout_s)
        for e in cfg.oioi_emps
    ]


def ocpi_parts(
    cfg: Config, store: Store, base_url: Callable[[], str]
) -> tuple[OcpiClient, Registrar] | None:
    """The OCPI client and registrar (None without an [ocpi] table): for the gateway and
    for `cpo-gateway ocpi ...` commands, over the same database."""
    if cfg.ocpi is None:
        return None
    ours = Party(cfg.ocpi.country_code, cfg.ocpi.party_id)
    client = OcpiClient(ours)
    partners = [
        PartnerSettings(e.name, e.versions_url or None, e.token_a or None, e.request_timeout_s)
        for e in cfg.ocpi_emps
    ]
    identity = Identity(ours, cfg.ocpi.business_name, base_url)
    return client, Registrar(store, client, identity, partners)


def offline_core(cfg: Config, store: Store, clock: Callable[[], float] = time.time) -> Core:
    """The core without listeners, chargers or EMP traffic, over a database the running
    gateway may share (WAL): for CLI commands that change state as the gateway would, e.g.
    closing a session writes its CDR to the outbox in the same commit. Not started: it
    queues nothing of its own."""

    def no_spawn(coro: Coroutine[Any, Any, Any], name: str) -> None:
        coro.close()
        raise RuntimeError(f"{name}: an offline core runs no background work")

    emp_link = route(cfg.emps, {"oioi": EmpClients(_endpoints(cfg), clock=clock)})
    return Core(
        store,
        cfg.catalogue,
        partners_of(cfg.emps),
        ChargerRegistry(),
        emp_link,
        cfg.core_settings,
        connected=list,
        spawn=no_spawn,
        clock=clock,
    )


def token_pull_job(emp: str) -> str:
    """The lease name of an OCPI partner's nightly token pull."""
    return f"ocpi-tokens:{emp}"


def _may_pull(cluster: ClusterNode | None, lease: str) -> bool:
    return cluster is None or cluster.holds(lease)


def _cluster_node(cfg: Config, chargers: ChargerRegistry, tasks: TaskSet) -> ClusterNode | None:
    """This gateway's node of a cluster (None: the storage is not PostgreSQL)."""
    c = cfg.cluster
    if c.url is None:
        return None
    settings = NodeSettings(c.url, c.node_id, c.heartbeat_s, c.alive_s, c.lease_retry_s)
    jobs = [*ONCE_PER_CLUSTER, *(token_pull_job(e.name) for e in cfg.ocpi_emps)]
    return ClusterNode(
        settings,
        chargers,
        tasks,
        admin=functools.partial(admin_execute, chargers),
        call_timeout_s=cfg.ocpp.call_timeout_s,
        lease_jobs=jobs,
    )


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
        collector: Collector | None = None,
        load: Callable[[], Config] | None = None,
        adapters: Mapping[str, EmpLink] | None = None,
    ) -> None:
        """`collector`: pace full garbage collections (a process-wide setting: the gateway's
        own process installs one; tests that run several gateways in one process do not).
        `load` reads the config again for a reload (default: the same file, this
        environment). `adapters`: partner adapters by protocol beside the built-in ones
        (the OIOI client), e.g. a recording one in tests."""
        self.config = config
        self._load = load or (lambda: load_config(config.path))
        self._reload_lock = asyncio.Lock()
        self.collector = collector
        self._endless: list[asyncio.Task[None]] = []  # loops cancelled at stop, not awaited
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.tasks = TaskSet(
            "gateway", on_service_end=self._service_ended, transient=(StorageUnavailable,)
        )
        self.died: str | None = None  # the first long-lived task that ended early
        self._shutdown: asyncio.Event | None = None
        self.watchdog_pings = 0
        self.watchdog_withheld = 0
        self.db: Database = open_database(config.storage)
        # The node named in the outbox rows it claims: [cluster] node_id.
        self.store = Store(self.db, node=config.cluster.node_id)
        # One registry per gateway: tests run many in one process.
        self.exposition = GatewayMetrics(self._parts, series_of(config.emps), __version__)
        self.emp_clients = EmpClients(
            _endpoints(config), clock=clock, timings=self.exposition.emp_request_seconds
        )
        self.ocpi: OcpiServer | None = None
        self.ocpi_client: OcpiClient | None = None
        self._registering: list[asyncio.Task[Any]] = []
        built = ocpi_parts(config, self.store, lambda: self._ocpi_base_url())
        # When the stations file in force was read: the last_updated of static OCPI data.
        self.catalogue_loaded_at = datetime.fromtimestamp(clock(), UTC)
        ocpi_reads = StoreReads(self.store, config.catalogue, lambda: self.catalogue_loaded_at)
        links: dict[str, EmpLink] = {"oioi": self.emp_clients}
        if built is not None and config.ocpi is not None:
            self.ocpi_client, registrar = built
            # Verifications go to the tokens module's link, deliveries to the push adapter.
            verifier = OcpiLink(self.ocpi_client, self.store, self.store.issued_as)
            links["ocpi"] = OcpiDeliverer(
                self.ocpi_client,
                self.store,
                ocpi_reads,
                Party(config.ocpi.country_code, config.ocpi.party_id),
                business_name=config.ocpi.business_name,
                verifier=verifier.verify,
            )
        links.update(adapters or {})
        self._unserved = unserved(config.emps, links.keys())
        self.emp_router = route(config.emps, links)
        # Every part is built here and only started by start(): none is None while the
        # gateway lives, so neither the code nor its tests guard against a missing part.
        cfg = config
        chargers = ChargerRegistry(self.exposition.charger_command_seconds)
        # In a cluster the core's commands reach chargers on every node (cluster/).
        self.cluster = _cluster_node(cfg, chargers, self.tasks)
        control: LocalChargers = chargers if self.cluster is None else self.cluster.control
        self.core = Core(
            self.store,
            cfg.catalogue,
            partners_of(cfg.emps),
            control,
            self.emp_router,
            cfg.core_settings,
            connected=chargers.connected_ids,
            spawn=lambda coro, name: self.tasks.spawn(coro, name=name),
            clock=clock,
        )
        if self.cluster is not None:
            self.cluster.serve(self.core)
        self.csms = CsmsServer(
            self.core,
            chargers,
            self.tasks,
            cfg.ocpp,
            id_tag_expiry_s=cfg.sessions.id_tag_expiry_s,
            ssl_context=_tls_context(cfg),
            admin_socket=cfg.gateway.state_dir / "admin.sock",
            call_timings=self.exposition.ocpp_call_seconds,
            clock=clock,
            client_certs=_client_cert_policy(cfg),
            certificates=CertificateService(
                chargers, self.store, _signer(cfg), known=self.core.is_known_charger
            ),
            admin_route=None if self.cluster is None else self.cluster.admin,
        )
        on_oioi = cfg.admin is None or cfg.admin.metrics_on_oioi
        self.oioi = OioiServer(
            self.core,
            [
                InboundPartner(e.name, e.inbound_api_key, e.partner_identifier)
                for e in cfg.oioi_emps
            ],
            host=cfg.oioi.host,
            port=cfg.oioi.port,
            path=cfg.oioi.path,
            max_body_bytes=cfg.oioi.max_body_bytes,
            health=self.health if on_oioi else None,
            metrics=self.metrics if on_oioi else None,
            limits=_listener_limits(cfg),
        )
        self.token_puller: TokenPuller | None = None
        if built is not None and cfg.ocpi is not None:
            us = Party(cfg.ocpi.country_code, cfg.ocpi.party_id)
            modules: list[OcpiModule] = [
                CommandsApi(self.core.commands, cfg.catalogue),
                TokensReceiver(self.core.tokens),
            ]
            modules += sender_modules(
                ocpi_reads, us, self._ocpi_base_url, business_name=cfg.ocpi.business_name
            )
            self.ocpi = OcpiServer(
                built[1],
                host=cfg.ocpi.host,
                port=cfg.ocpi.port,
                base_url=cfg.ocpi.base_url,
                ours=us,
                max_body_bytes=cfg.ocpi.max_body_bytes,
                limits=_listener_limits(cfg),
                modules=modules,
            )
            self.token_puller = TokenPuller(built[0], self.core.tokens)
        self.jobs = Jobs(
            self.core,
            outbox_tick_s=cfg.outbox.tick_s,
            status_resync_h=cfg.outbox.status_resync_h,
            prune_after_days=cfg.outbox.prune_after_days,
            clock=clock,
            leased=None if self.cluster is None else self.cluster.holds,
        )
        self.console = self._console()  # None: no [admin] table, or disabled
        self._core_started = False
        self._listening = False  # both listeners bound
        self.started_at = 0.0

    async def start(self) -> None:
        started = time.monotonic()
        cfg = self.config
        if self._unserved:
            raise StartupError(
                f"{cfg.path}: no adapter in this build serves [[emp]] "
                f"{', '.join(self._unserved)}: set its protocol to one this gateway speaks",
                EXIT_CONFIG,
            )
        try:
            cfg.gateway.state_dir.mkdir(parents=True, exist_ok=True)
            probe = cfg.gateway.state_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
            await self.db.open()
        except OSError as exc:
            raise StartupError(
                f"state dir {cfg.gateway.state_dir} is not writable: {exc.strerror or exc}",
                EXIT_CANTCREATE,
            ) from exc
        except DatabaseUnusable as exc:
            raise StartupError(f"database not usable: {exc}", EXIT_CANTCREATE) from exc
        except DatabaseUnreachable as exc:  # systemd starts it again (Restart=on-failure)
            raise StartupError(f"database not reachable: {exc}", EXIT_TEMPFAIL) from exc
        log.info("db.opened", backend=self.db.backend, database=self.db.describe)
        # What an earlier run of this node claimed died with it: due again at once.
        released = await self.store.release_claims()
        if released:
            log.info("outbox.claims_released", rows=released, node=self.store.node)
        await self.emp_clients.start()
        self._core_started = True  # from here on, stop() flushes what the core queued
        await self.core.start()
        if self.cluster is not None:
            self.cluster.start()  # before the listeners: calls from other nodes find it up
        try:
            await self.oioi.start()
            if self.ocpi is not None:
                await self.ocpi.start()
            await self.csms.start()
        except OSError as exc:
            raise StartupError(f"cannot listen: {exc.strerror or exc}", EXIT_CANTBIND) from exc
        self._listening = True
        await self._register_ocpi_partners()
        self._pull_ocpi_tokens()
        self.jobs.start()
        await self._start_console()
        if self.notifier.watchdog_interval_s:
            self._endless.append(
                self.tasks.service(
                    self._watchdog(self.notifier.watchdog_interval_s), name="watchdog"
                )
            )
        if self.collector is not None:
            self.collector.install()  # after startup: what it built is frozen
            self._endless.append(self.tasks.service(self.collector.run(), name="gc-pacing"))
        self.started_at = self.clock()
        self.notifier.ready(f"ocpp :{self.csms.port}, oioi :{self.oioi.port}")
        log.info(
            "gateway.ready",
            version=__version__,
            ocpp_port=self.csms.port,
            oioi_port=self.oioi.port,
            ocpi_port=self.ocpi.port if self.ocpi is not None else None,
            admin_port=self.console.port if self.console is not None else None,
            stations=len(cfg.catalogue.stations),
            emps=len(cfg.emps),
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _ocpi_base_url(self) -> str:
        assert self.ocpi is not None
        return self.ocpi.base_url

    async def _register_ocpi_partners(self) -> None:
        """Register with every OCPI partner that gave us a token A and is not registered
        yet, each in a tracked task retrying with back-off until it succeeds (cancelled at
        stop: a partner that stays down must not hold the shutdown)."""
        if self.ocpi is None:
            return
        registrar = self.ocpi.registrar
        for name, partner in registrar.partners.items():
            link = await self.store.link(name)
            if partner.token_a and (link is None or link.state is not LinkState.REGISTERED):
                self._registering.append(
                    self.tasks.spawn(
                        registrar.register_until_done(name), name=f"ocpi-register-{name}"
                    )
                )

    def _pull_ocpi_tokens(self) -> None:
        """Each OCPI partner's full token list, pulled once it is registered and then
        nightly (loops cancelled at stop)."""
        puller = self.token_puller
        if puller is None:
            return
        store, cluster = self.store, self.cluster
        for e in self.config.ocpi_emps:
            lease = token_pull_job(e.name)
            self._endless.append(
                self.tasks.service(
                    puller.keep_pulling(
                        e.name,
                        lambda p: pull_source(store, p),
                        may_run=functools.partial(_may_pull, cluster, lease),
                    ),
                    name=f"ocpi-tokens-{e.name}",
                )
            )

    def _console(self) -> ConsoleServer | None:
        admin = self.config.admin
        if admin is None or not admin.enabled:
            return None
        return ConsoleServer(
            GatewayOps(
                self.config,
                self.store,
                self.core,
                self.csms,
                clock=self.clock,
                chargers=None if self.cluster is None else self.cluster.control,
            ),
            host=admin.host,
            port=admin.port,
            operators=[Operator(u.name, u.password_hash) for u in admin.users],
            token=admin.token,
            session_ttl_s=admin.session_ttl_s,
            cookie_secure=admin.cookie_secure,
            health=self.health,
            metrics=self.metrics,
            # The same deadlines as the OIOI port; the caps count for this listener alone.
            limits=_listener_limits(self.config),
        )

    async def _start_console(self) -> None:
        admin = self.config.admin
        if self.console is None or admin is None:
            return
        try:
            await self.console.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on admin {admin.host}:{admin.port}: {exc.strerror or exc}",
                EXIT_CANTBIND,
            ) from exc

    def request_reload(self) -> None:
        """SIGHUP: reload in a task of the gateway's own (the signal handler must not wait)."""
        self.tasks.spawn(self.reload(), name="config-reload")

    async def reload(self) -> bool:
        """See _reload; one at a time, so two quick SIGHUPs apply the files in order."""
        async with self._reload_lock:
            return await self._reload()

    async def _reload(self) -> bool:
        """Read the config and stations files again and apply what can change while running:
        the stations file (new, changed and removed stations and chargers, their passwords
        and security profiles) and the log level. An invalid file changes nothing; sections
        that need a restart (listeners, EMPs, ...) are named in the log and kept as running.
        True when the new files were applied."""
        core, csms = self.core, self.csms
        if not self._listening:
            log.warning("config.reload_ignored", reason="the gateway is not running")
            return False
        try:
            new = self._load()
        except ConfigError as exc:
            log.error("config.reload_refused", path=str(self.config.path), problems=exc.problems)
            return False
        problems = await core.reload_catalogue(new.catalogue)
        if problems:
            log.error("config.reload_refused", path=str(self.config.path), problems=problems)
            return False
        self.catalogue_loaded_at = datetime.fromtimestamp(self.clock(), UTC)
        fixed = ("gateway", "ocpp", "oioi", "ocpi", "sessions", "outbox", "admin")
        kept = [name for name in fixed if getattr(new, name) != getattr(self.config, name)]
        if not await self._reload_keys(new):
            kept.append("emp")
        if kept:
            log.warning("config.reload_needs_restart", sections=kept)
        # Only the level: the format and the stream stay as started (where the output goes).
        logs.set_level(new.logging.level)
        self.config = dataclasses.replace(
            self.config, logging=dataclasses.replace(self.config.logging, level=new.logging.level)
        )
        closed = await csms.close_removed()
        log.info(
            "config.reloaded",
            stations=len(core.catalogue.stations),
            chargers=len(core.catalogue.charge_point_ids()),
            chargers_closed=closed,
            log_level=new.logging.level,
        )
        return True

    async def _reload_keys(self, new: Config) -> bool:
        """Apply changed outbound keys of the same EMPs (a paused EMP resumes at once);
        False, and nothing applied, when the EMPs differ in anything else (a restart)."""
        old = {e.name: e for e in self.config.emps}
        if set(old) != {e.name for e in new.emps} or any(
            dataclasses.replace(e, api_key=old[e.name].api_key) != old[e.name] for e in new.emps
        ):
            return False
        for emp in new.emps:
            if emp.protocol == "oioi" and emp.api_key != old[emp.name].api_key:
                self.emp_clients.set_key(emp.name, emp.api_key)
                await self.core.resume_delivery(emp.name)
                log.info("emp.key_changed", emp=emp.name)
        self.config = dataclasses.replace(self.config, emps=new.emps)
        return True

    def _service_ended(self, task: str, exc: BaseException | None) -> None:
        if self.died is None:
            self.died = task
        log.error("gateway.task_died", task=task, exit_code=ServiceDied.exit_code)
        if self._shutdown is not None:
            self._shutdown.set()

    async def _watchdog(self, interval_s: float) -> None:
        """WATCHDOG=1 only while `health()` passes: a gateway that cannot serve stops pinging
        and systemd restarts it after WatchdogSec."""
        was_healthy = True
        while True:
            try:
                async with asyncio.timeout(interval_s):
                    healthy, detail = await self.health()
            except Exception as exc:  # a health check that cannot run is a failing one
                healthy, detail = False, {"error": repr(exc)}
            if healthy:
                self.notifier.watchdog()
                self.watchdog_pings += 1
            else:
                self.watchdog_withheld += 1
                if was_healthy:
                    log.warning("watchdog.withheld", health=detail)
            if healthy and not was_healthy:
                log.info("watchdog.resumed")
            was_healthy = healthy
            await asyncio.sleep(interval_s)

    async def stop(self) -> None:
        started = time.monotonic()
        grace = self.config.gateway.shutdown_grace_s
        self.tasks.stop_supervising()
        self.notifier.stopping()
        log.info("gateway.stopping", grace_s=grace)
        if self.console is not None:
            await self.console.close()  # no operator action during shutdown; live views end
        await self.oioi.stop_accepting()
        if self.ocpi is not None:
            await self.ocpi.stop_accepting()
        for task in self._registering:
            task.cancel()  # a handshake not done by now is retried at the next start
        # Jobs still running get a quarter of the grace; the flush below delivers once more.
        await self.jobs.stop(grace / 4)
        await self.csms.close(1012)
        if self.cluster is not None:
            await self.cluster.close(grace / 8)  # this node holds no charger and no lease
        for task in self._endless:
            task.cancel()  # loops with nothing in flight: the grace is for the others
        await self.tasks.drain(grace / 2)
        if self.collector is not None:
            self.collector.uninstall()
        if self._core_started and self.db.is_open:
            try:
                async with asyncio.timeout(grace / 4):
                    await self.core.flush_statuses()
                    await self.core.deliver_all()
            except TimeoutError:
                log.warning("gateway.flush_timeout")
        await self.oioi.close()
        if self.ocpi is not None:
            await self.ocpi.close()
        if self.ocpi_client is not None:
            await self.ocpi_client.close()
        await self.emp_clients.close()
        await self.db.close()
        log.info("gateway.stopped", ms=round((time.monotonic() - started) * 1000, 1))

    async def run(self, shutdown: asyncio.Event) -> None:
        """Serve until `shutdown` is set, or a long-lived task ends (then ServiceDied)."""
        self._shutdown = shutdown
        try:
            await self.start()
            if self.died is None:
                await shutdown.wait()
        finally:
            await self.stop()
        if self.died is not None:
            raise ServiceDied(self.died)

    # --- operations ----------------------------------------------------------------------------
    async def health(self) -> tuple[bool, dict[str, object]]:
        db_open = self.db.is_open
        failure = self.db.write_failure  # a database that opens but cannot commit is down
        oldest = 0.0
        if db_open:
            stats = await self.store.outbox_stats(self.clock())
            pending = [s.oldest_age_s for s in stats if s.state is OutboxState.PENDING]
            oldest = max(pending, default=0.0)
        listeners = self._listening and self.oioi.accepting
        failing = self.jobs.failing()
        jobs_ok = self.jobs.scheduler.running and not failing
        db_state = "closed" if not db_open else "open" if failure is None else "writes failing"
        backend = self.db.backend
        extra: dict[str, object] = {} if failure is None else {"db_error": failure}
        paused = self.core.paused_emps
        ok = db_open and failure is None and listeners and jobs_ok and self.died is None
        return ok, {
            # degraded: the gateway works, an EMP does not take our messages (no restart helps).
            "degraded": {emp: f"refuses our key: {why}" for emp, why in paused.items()},
            "db": db_state,
            "db_backend": backend,
            **extra,
            "listeners": "up" if listeners else "down",
            "tasks": "up" if self.died is None else f"{self.died} ended",
            "jobs": "up" if jobs_ok else f"failing: {', '.join(failing)}" if failing else "down",
            "outbox_oldest_pending_s": round(oldest, 1),
            "chargers_connected": len(self.csms.connections),
            "node": self.config.cluster.node_id,
            # In a cluster: PostgreSQL as the bus sees it, the peers alive, the leases held.
            **({} if self.cluster is None else {"cluster": self.cluster.health()}),
        }

    async def metrics(self) -> str:
        """The Prometheus text format of this gateway's registry (a fresh read of the
        database figures, then every part's counters as they stand)."""
        figures = Figures()
        if self.db.is_open:
            figures.outbox = await self.store.outbox_stats(self.clock())
            figures.local_list = await self.core.local_list_states()
            figures.needing_review = await self.store.count_needing_review()
            figures.whitelist = await self.store.whitelist_counts()
        figures.claims_expired = self.store.claims_expired
        return self.exposition.text(figures)

    def _parts(self, figures: Figures) -> Parts:
        pacing = self.collector.stats if self.collector is not None else None
        node, cluster = self.config.cluster.node_id, None
        if self.cluster is not None:
            c = self.cluster
            cluster = ClusterFigures(
                c.bus.up,
                len(c.presence.peers),
                c.presence.chargers_elsewhere,
                c.leases.held,
                c.leases.jobs,
                c.calls.made,
                c.calls.timed_out,
                c.calls.served,
            )
        return Parts(self.csms, self.oioi, self.core, pacing, figures, self.ocpi, node, cluster)
