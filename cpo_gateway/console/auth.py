"""Who may use the console: operators with scrypt hashes or one shared token, server-side
sessions with a CSRF token each, and a failure limit on logins.

A session is a random id in a cookie (HttpOnly, SameSite=Strict); everything else stays here,
so logging out or expiry ends it at once. The CSRF token is per session and travels in every
form; SameSite=Strict already keeps other sites' requests cookie-less, the token also covers
browsers and proxies that do not honour it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cpo_gateway.passwords import verify_password
from cpo_gateway.ratelimit import FailureLimiter

MAX_SESSIONS = 1000  # bounded memory: the oldest sessions go first
MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    password_hash: str = field(repr=False)


@dataclass(slots=True)
class Session:
    id: str
    operator: str
    csrf: str
    expires_at: float
    flash: list[tuple[bool, str]] = field(default_factory=list)


class LoginRefused(Exception):
    """Wrong name or password (one message for both), or too many failures."""

    def __init__(self, message: str, limited: bool = False) -> None:
        super().__init__(message)
        self.limited = limited


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "replace")).digest()


class Authenticator:
    def __init__(
        self,
        operators: Sequence[Operator],
        token: str,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self._operators = {o.name: o for o in operators}
        self._token = token
        self._ttl = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        # Five wrong passwords a minute per (source, name), twenty names per source.
        self.limiter = limiter or FailureLimiter(max_failures=5, window_s=60.0)

    @property
    def configured(self) -> bool:
        return bool(self._operators or self._token)

    async def login(self, name: str, password: str, source: str) -> Session:
        name = name.strip()[:MAX_NAME]
        keys = (f"ip:{source}", f"name:{source}:{name}")
        if self.limiter.blocked(*keys):
            raise LoginRefused("too many failed logins; wait a minute", limited=True)
        if not await self._check(name, password):
            self.limiter.failed(*keys)
            raise LoginRefused("wrong name or password")
        return self._open(name if name in self._operators else f"{name or 'operator'} (token)")

    async def _check(self, name: str, password: str) -> bool:
        operator = self._operators.get(name)
        if operator is not None:
            # scrypt takes ~50 ms of CPU: never on the event loop.
            return await asyncio.to_thread(verify_password, password, operator.password_hash)
        if self._token and password:
            return hmac.compare_digest(_digest(password), _digest(self._token))
        return False

    def _open(self, operator: str) -> Session:
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
            del self._sessions[oldest.id]
        session = Session(
            id=secrets.token_urlsafe(32),
            operator=operator,
            csrf=secrets.token_urlsafe(32),
            expires_at=self._clock() + self._ttl,
        )
        self._sessions[session.id] = session
        return session

    def session(self, session_id: str | None) -> Session | None:
        """The live session of that id; None when unknown or expired."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            del self._sessions[session_id]
            return None
        return session

    def logout(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def close_all(self) -> None:
        self._sessions.clear()


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(_digest(given), _digest(session.csrf))
