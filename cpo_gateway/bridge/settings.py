"""The core's settings: the [sessions] and [outbox] tables of the config, with their
defaults, and the two figures the core takes from the listeners' tables.

Defined here, not in config.py, because the core must not import the config reader (it
parses files); config.py reads the tables into these dataclasses and builds CoreSettings,
so every default lives once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cpo_gateway.bridge.owed import Owed


@dataclass(frozen=True)
class SessionsConfig:
    """The [sessions] table."""

    id_tag_strategy: str = "evco"  # evco | hash
    pending_start_timeout_s: float = 90.0
    status_debounce_s: float = 2.0
    cdr_on_start: bool = False
    auth_cache_ttl_s: float = 300.0
    id_tag_expiry_s: int = 3600
    ghost_grace_s: float = 300.0
    # How often a running session's progress (energy so far) is queued for partners that
    # follow sessions, per session. A meter report every 10-60 s is common; a minute keeps
    # the partner's app current to a minute while costing at most 60 rows an hour per
    # session (coalesced: a partner that is down holds one row per session, not a backlog).
    update_interval_s: float = 60.0


@dataclass(frozen=True)
class OutboxConfig:
    """The [outbox] table."""

    max_backoff_s: float = 3600.0
    base_backoff_s: float = 2.0
    retry_window_s: float = 48 * 3600.0
    tick_s: float = 0.25
    batch_size: int = 500
    prune_after_days: int = 7
    status_resync_h: float = 24.0
    # How long a node's claim on the rows it delivers lasts; at least twice the longest EMP
    # request_timeout_s (a row is sent only in the first half of its claim).
    claim_s: float = 60.0


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """What the core is tuned by. `offline_grace_s` comes from [ocpp] (how long a charger
    may be gone before its connectors are Offline), `request_deadline_s` from the EMPs'
    listener (how long an EMP's request may take, the charger's answer included)."""

    offline_grace_s: float
    request_deadline_s: float
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)


@dataclass(frozen=True, slots=True)
class Partner:
    """An EMP as the core sees it: who it is and its terms, what it is owed.

    `wants`: the kinds of message the core queues for it (nothing else is ever queued for
    it). `online_authorization`: whether it is asked about unknown tokens while a driver
    waits. `fixed_connectors`: a station it has received keeps its connectors (a change
    means deleting the station and adding it again under a new id). `offline_detail`: see
    below. The composition root
    derives the terms from the partner's protocol."""

    name: str
    partner_identifier: str
    online_authorization: bool
    accept_when_unreachable: bool
    verify_timeout_s: float
    concurrency: int
    wants: frozenset[Owed]
    fixed_connectors: bool
    # It is told why an Offline EVSE is offline (a fault or a switch-off): a change between
    # the two alone is owed to it (to no other partner: their status did not change).
    offline_detail: bool = False

    def owed(self, kind: Owed) -> bool:
        return kind in self.wants
