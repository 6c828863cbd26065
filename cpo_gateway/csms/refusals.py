"""Handshakes refused before the upgrade: counted by reason, logged once per interval.

Every refusal (bad path, no supported subprotocol, unknown id, TLS required, a TLS handshake
that failed, a client certificate refused, too many failed logins, failed login) must leave
a trace, or a charger that cannot connect looks merely
offline. A charger retries every few seconds, so each (reason, charge point, detail) is logged
at most once per interval, with how many refusals the last interval suppressed; the table of
keys is bounded so a spray of made-up ids cannot grow memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from cpo_gateway import logs

log = logs.get(__name__)
LOG_INTERVAL_S = 60.0
MAX_KEYS = 10_000


class Refusal(StrEnum):
    BAD_PATH = "bad_path"
    SUBPROTOCOL = "subprotocol"
    UNKNOWN_ID = "unknown_id"
    TLS_REQUIRED = "tls_required"
    RATE_LIMITED = "rate_limited"
    AUTH_FAILED = "auth_failed"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"  # no TLS agreed (version, alert, not TLS)
    # Security profile 3 (clientcert.CertProblem has the same values).
    CLIENT_CERT_MISSING = "client_cert_missing"
    CLIENT_CERT_UNREADABLE = "client_cert_unreadable"
    CLIENT_CERT_EXPIRED = "client_cert_expired"
    CLIENT_CERT_UNTRUSTED = "client_cert_untrusted"
    CLIENT_CERT_WRONG_CN = "client_cert_wrong_cn"
    CLIENT_CERT_WRONG_O = "client_cert_wrong_o"


_EVENTS = {
    Refusal.BAD_PATH: "charger.refused_path",
    Refusal.SUBPROTOCOL: "charger.refused_subprotocol",
    Refusal.UNKNOWN_ID: "charger.refused_unknown",
    Refusal.TLS_REQUIRED: "security.tls_required",
    Refusal.RATE_LIMITED: "security.auth_rate_limited",
    Refusal.AUTH_FAILED: "security.auth_failed",
    Refusal.TLS_HANDSHAKE_FAILED: "security.tls_handshake_failed",
    Refusal.CLIENT_CERT_MISSING: "security.client_cert_missing",
    Refusal.CLIENT_CERT_UNREADABLE: "security.client_cert_unreadable",
    Refusal.CLIENT_CERT_EXPIRED: "security.client_cert_expired",
    Refusal.CLIENT_CERT_UNTRUSTED: "security.client_cert_untrusted",
    Refusal.CLIENT_CERT_WRONG_CN: "security.client_cert_wrong_cn",
    Refusal.CLIENT_CERT_WRONG_O: "security.client_cert_wrong_o",
}
PROXY_HEADER_IGNORED = "security.proxy_header_ignored"


class Refusals:
    def __init__(
        self,
        *,
        interval_s: float = LOG_INTERVAL_S,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counts: dict[Refusal, int] = dict.fromkeys(Refusal, 0)
        self._interval = interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._logged: dict[tuple[str, str, str], tuple[float, int]] = {}

    def __len__(self) -> int:
        """Keys tracked for the log interval (bounded by max_keys)."""
        return len(self._logged)

    def refuse(self, kind: Refusal, who: str, detail: str = "", **fields: object) -> None:
        """Count one refusal; log it unless the same was logged within the interval."""
        self.counts[kind] += 1
        key = (kind, who, detail)
        now = self._clock()
        seen = self._logged.get(key)
        if seen is not None and now - seen[0] < self._interval:
            self._logged[key] = (seen[0], seen[1] + 1)
            return
        self._make_room(now)
        self._logged.pop(key, None)  # re-inserted last: the table stays in logging order
        self._logged[key] = (now, 0)
        log.warning(
            _EVENTS[kind],
            refused=kind.value,
            suppressed=seen[1] if seen is not None else 0,
            **fields,
        )

    def remark(self, event: str, who: str, **fields: object) -> bool:
        """Log `event` (not a refusal: the handshake goes on) at most once per interval per
        `who`, by the same rules and table as refusals; True when it was logged."""
        key = (event, who, "")
        now = self._clock()
        seen = self._logged.get(key)
        if seen is not None and now - seen[0] < self._interval:
            self._logged[key] = (seen[0], seen[1] + 1)
            return False
        self._make_room(now)
        self._logged.pop(key, None)
        self._logged[key] = (now, 0)
        log.warning(event, suppressed=seen[1] if seen is not None else 0, **fields)
        return True

    def _make_room(self, now: float) -> None:
        if len(self._logged) < self._max_keys:
            return
        for key, (at, _) in list(self._logged.items()):
            if now - at >= self._interval:
                del self._logged[key]
        if len(self._logged) >= self._max_keys:  # all recent: forget the oldest tenth
            for key in list(self._logged)[: max(1, self._max_keys // 10)]:
                del self._logged[key]
