"""/metrics: one prometheus_client registry per gateway (several gateways may live in one
process, e.g. in tests; nothing goes on the client's global REGISTRY).

Counters stay plain typed values next to what they count (the core imports no metrics
library); `GatewayCollector` reads them at scrape time and yields metric families. Latency
histograms are the client's own, observed by the adapters through `cpo_gateway.timing`.
Figures that live in the database (outbox, whitelists, local lists, held sessions) are read
by the async `Figures` step just before the synchronous collection.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from cpo_gateway.bridge.locallist import ListState
from cpo_gateway.bridge.model import DeliveryStatus
from cpo_gateway.bridge.ports import OutboxStat, OutboxState

if TYPE_CHECKING:
    from cpo_gateway.bridge.core_ports import CoreCounters
    from cpo_gateway.csms.server import CsmsServer
    from cpo_gateway.ocpi.server import OcpiServer
    from cpo_gateway.oioi.server import OioiServer
    from cpo_gateway.runtime import CollectorStats

P = "cpo_gateway_"
OUTBOX_STATES = (OutboxState.PENDING, OutboxState.DEAD)
# A charger's Call is answered from local state plus one commit: milliseconds, seconds when
# the database stalls. EMP requests and charger commands cross a network: up to their timeouts.
OCPP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REMOTE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class EmpSeries:
    """How one EMP's series are labelled. `kinds` maps each outbox kind the EMP is owed to
    the `kind` label its figures carry: the name of its protocol's call, which dashboards
    and alerts know (an OIOI EMP's CDRs read "session-post"). `requests` are the kinds of
    requests its adapter times in emp_request_seconds, made to exist at 0."""

    name: str
    kinds: Mapping[str, str]
    requests: tuple[str, ...] = ()


@dataclass(slots=True)
class Figures:
    """What the database says, read before each scrape (the collection itself cannot await)."""

    outbox: list[OutboxStat] = field(default_factory=list)
    local_list: Mapping[ListState, int] = field(default_factory=dict)
    needing_review: int = 0
    whitelist: Mapping[str, int] = field(default_factory=dict)
    claims_expired: int = 0  # outbox claims taken over from an expired claim, by this node


@dataclass(frozen=True, slots=True)
class ClusterFigures:
    """A cluster node's figures (app.py reads them off cluster/)."""

    db_up: bool
    peers: int
    chargers_elsewhere: int
    leases: Sequence[str]
    lease_jobs: Sequence[str]
    calls_made: int
    calls_unanswered: int
    calls_served: int


@dataclass(slots=True)
class Parts:
    """The gateway's parts as they stand (None before start)."""

    csms: CsmsServer | None
    oioi: OioiServer | None
    core: CoreCounters | None
    pacing: CollectorStats | None
    figures: Figures
    ocpi: OcpiServer | None = None
    node: str = ""
    cluster: ClusterFigures | None = None


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(P + name, doc, labels=labels)


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, labels=labels)


def _filled(
    family: CounterMetricFamily | GaugeMetricFamily, items: Iterable[tuple[Sequence[str], float]]
) -> Metric:
    for labels, value in items:
        family.add_metric(list(labels), value)
    return family


class GatewayCollector(Collector):
    """Every figure the gateway's parts keep, as metric families, read at scrape time."""

    def __init__(self, parts: Callable[[], Parts], emps: Sequence[EmpSeries], version: str) -> None:
        self._parts = parts
        self._emps = tuple(emps)
        self._labels = {e.name: e.kinds for e in emps}
        self._version = version

    def _kind(self, emp: str, kind: str) -> str:
        return self._labels.get(emp, {}).get(kind, kind)

    def collect(self) -> Iterator[Metric]:
        p = self._parts()
        yield _filled(
            _gauge("build_info", "The gateway's version and Python", ["version", "python"]),
            [((self._version, platform.python_version()), 1)],
        )
        # The node as one constant series (join on it), not a label on every series: the
        # scraper's own `instance` label already tells nodes apart, and a label here would
        # change every series' identity for users of a single node.
        yield _filled(
            _gauge("node_info", "This gateway's node id (the [cluster] node_id)", ["node"]),
            [((p.node,), 1)],
        )
        if p.cluster is not None:
            yield from self._cluster(p.cluster)
        yield from self._ocpp(p.csms)
        yield from self._oioi(p.oioi)
        yield from self._ocpi(p.ocpi)
        yield from self._core(p.core)
        yield from self._stored(p.figures)
        if p.pacing is not None:
            yield from self._gc(p.pacing)

    def _cluster(self, c: ClusterFigures) -> Iterator[Metric]:
        yield _filled(
            _gauge("cluster_db_up", "1 while both bus connections to PostgreSQL are up"),
            [((), 1 if c.db_up else 0)],
        )
        yield _filled(_gauge("cluster_peers", "Other nodes seen alive"), [((), c.peers)])
        yield _filled(
            _gauge("cluster_chargers_elsewhere", "Chargers connected to other alive nodes"),
            [((), c.chargers_elsewhere)],
        )
        yield _filled(
            _gauge("cluster_lease_held", "1 while this node holds the job's lease", ["job"]),
            [((job,), 1 if job in c.leases else 0) for job in c.lease_jobs],
        )
        yield _filled(
            _counter("cluster_calls", "Commands sent to other nodes, by outcome", ["outcome"]),
            [
                (("answered",), c.calls_made - c.calls_unanswered),
                (("unanswered",), c.calls_unanswered),
            ],
        )
        yield _filled(
            _counter("cluster_calls_served", "Commands other nodes sent here"),
            [((), c.calls_served)],
        )

    def _ocpp(self, csms: CsmsServer | None) -> Iterator[Metric]:
        yield _filled(
            _gauge("chargers_connected", "Chargers with an open websocket"),
            [((), len(csms.connections) if csms else 0)],
        )
        yield _filled(
            _counter("ocpp_messages", "OCPP Calls received by action", ["action"]),
            [((a,), n) for a, n in (csms.handlers.counts.items() if csms else [])],
        )
        yield _filled(
            _counter("ocpp_auth_failures", "Refused charger logins"),
            [((), csms.auth_failures if csms else 0)],
        )
        yield _filled(
            _counter(
                "ocpp_refused",
                "Charger handshakes refused before the upgrade, by reason",
                ["reason"],
            ),
            [((r.value,), n) for r, n in (csms.refusals.counts.items() if csms else [])],
        )
        yield _filled(
            _counter(
                "ocpp_proxy_headers_ignored",
                "Client certificate headers from peers not in [ocpp.tls] trusted_proxies",
            ),
            [((), csms.proxy_headers_ignored if csms else 0)],
        )
        yield _filled(
            _counter(
                "ocpp_takeovers",
                "Connected chargers whose socket a new connection with the same id replaced",
            ),
            [((), csms.takeovers if csms else 0)],
        )
        commands = csms.registry.commands.items() if csms else []
        yield _filled(
            _counter(
                "charger_commands",
                "Our Calls to chargers by action and result",
                ["action", "result"],
            ),
            [((a, r.value), n) for (a, r), n in commands],
        )

    def _oioi(self, oioi: OioiServer | None) -> Iterator[Metric]:
        yield _filled(
            _counter("oioi_requests", "OIOI requests by call and result code", ["call", "code"]),
            [((c, str(k)), n) for (c, k), n in (oioi.requests.items() if oioi else [])],
        )
        listener = oioi.listener if oioi else None
        yield _filled(
            _gauge("oioi_connections", "Open connections on the OIOI port"),
            [((), listener.open if listener else 0)],
        )
        yield _filled(
            _counter(
                "oioi_connections_timed_out",
                "OIOI connections closed for a missed deadline, by phase",
                ["phase"],
            ),
            [((ph,), n) for ph, n in (listener.timed_out.items() if listener else [])],
        )
        limited = listener.limiter.limited.items() if listener else []
        yield _filled(
            _counter(
                "oioi_connections_limited",
                "OIOI connections over a cap: an idle one recycled, or the new one refused",
                ["limit", "outcome"],
            ),
            [((c, o), n) for (c, o), n in limited],
        )

    def _ocpi(self, ocpi: OcpiServer | None) -> Iterator[Metric]:
        yield _filled(
            _counter(
                "ocpi_requests",
                "OCPI requests answered, by module and OCPI status code",
                ["module", "status_code"],
            ),
            [((m, str(c)), n) for (m, c), n in (ocpi.counts.items() if ocpi else [])],
        )

    def _core(self, core: CoreCounters | None) -> Iterator[Metric]:
        results: dict[tuple[str, str, str], int] = {}
        for (emp, kind, status), n in core.delivery_results.items() if core else []:
            key = (emp, self._kind(emp, kind), status.value)
            results[key] = results.get(key, 0) + n
        for e in self._emps:  # configured EMPs read 0 before their first message
            for label in e.kinds.values():
                for status in DeliveryStatus:
                    results.setdefault((e.name, label, status.value), 0)
        yield _filled(
            _counter(
                "deliveries",
                "Outbox messages sent to an EMP, by EMP, kind and how the EMP answered",
                ["emp", "kind", "result"],
            ),
            list(results.items()),
        )
        decisions = core.authorization_decisions.items() if core else []
        yield _filled(
            _counter(
                "authorizations", "Authorization decisions by path and status", ["path", "status"]
            ),
            [((path.value, status.value), n) for (path, status), n in decisions],
        )
        pushes = core.local_list_outcomes.items() if core else []
        yield _filled(
            _counter("local_list_pushes", "Local-list pushes to chargers by result", ["result"]),
            [((r,), n) for r, n in pushes],
        )

    def _stored(self, f: Figures) -> Iterator[Metric]:
        # Every configured EMP, kind and state has a series: an empty outbox reads 0, so a
        # dashboard or an alert never sees "no data" where it should see zero.
        found = {(o.emp, self._kind(o.emp, o.kind), o.state): o for o in f.outbox}
        keys = [(e.name, k, s) for e in self._emps for k in e.kinds.values() for s in OUTBOX_STATES]
        keys += sorted(set(found) - set(keys))
        depth = _gauge("outbox_depth", "Undelivered outbox rows", ["emp", "kind", "state"])
        oldest = _gauge(
            "outbox_oldest_age_seconds",
            "Age of the oldest undelivered row",
            ["emp", "kind", "state"],
        )
        for key in keys:
            figure = found.get(key)
            depth.add_metric(list(key), figure.depth if figure else 0)
            oldest.add_metric(list(key), figure.oldest_age_s if figure else 0.0)
        yield depth
        yield oldest
        yield _filled(
            _counter(
                "outbox_claims_expired",
                "Outbox rows this node claimed after another claim on them had expired "
                "(a node died or stalled mid-delivery)",
            ),
            [((), f.claims_expired)],
        )
        yield _filled(
            _gauge(
                "local_list_chargers", "Chargers by where they stand with the whitelist", ["state"]
            ),
            [((s.value,), n) for s, n in f.local_list.items()],
        )
        yield _filled(
            _gauge("sessions_needing_review", "Sessions whose CDR is held as implausible"),
            [((), f.needing_review)],
        )
        yield _filled(
            _gauge("whitelist_size", "UIDs in each EMP's whitelist", ["emp"]),
            [((e,), n) for e, n in f.whitelist.items()],
        )

    def _gc(self, pacing: CollectorStats) -> Iterator[Metric]:
        yield _filled(
            _counter("gc_full_collections", "Full garbage collections run by the gateway"),
            [((), pacing.full_collections)],
        )
        yield _filled(
            _counter("gc_young_collections", "Young-generation collections run by the gateway"),
            [((), pacing.young_collections)],
        )
        yield _filled(
            _gauge("gc_pause_seconds", "Event-loop pause of full collections", ["which"]),
            [
                (("last",), pacing.last_pause_ms / 1000),
                (("longest",), pacing.longest_pause_ms / 1000),
            ],
        )


class GatewayMetrics:
    """One gateway's registry: its collector, the process figures and the histograms the
    adapters observe."""

    def __init__(
        self, parts: Callable[[Figures], Parts], emps: Sequence[EmpSeries], version: str
    ) -> None:
        self.registry = CollectorRegistry()
        self._figures = Figures()
        self._parts = parts
        self.registry.register(GatewayCollector(self._current, emps, version))
        ProcessCollector(namespace="", registry=self.registry)
        self.ocpp_call_seconds = Histogram(
            P + "ocpp_call_seconds",
            "From receiving a charger's Call to sending our answer (commit included), by action",
            ["action"],
            registry=self.registry,
            buckets=OCPP_BUCKETS,
        )
        self.emp_request_seconds = Histogram(
            P + "emp_request_seconds",
            "Requests to an EMP by EMP and kind (its protocol's call), answered or not",
            ["emp", "kind"],
            registry=self.registry,
            buckets=REMOTE_BUCKETS,
        )
        self.charger_command_seconds = Histogram(
            P + "charger_command_seconds",
            "From sending a command to a charger to its answer (or timeout), by action",
            ["action"],
            registry=self.registry,
            buckets=REMOTE_BUCKETS,
        )
        for emp in emps:  # series exist before the first request: rates read 0, not absent
            for kind in emp.requests:
                self.emp_request_seconds.labels(emp.name, kind)

    def _current(self) -> Parts:
        return self._parts(self._figures)

    def text(self, figures: Figures) -> str:
        """The text format; `figures` read just before (no await between them and the
        collection, so concurrent scrapes each see their own)."""
        self._figures = figures
        return generate_latest(self.registry).decode()
