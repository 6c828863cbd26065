"""The OCPP listener's TLS handshake, run by us so that a refused one leaves a trace.

Given `ssl=`, asyncio runs the handshake before websockets sees the connection, and drops a
failed one without a word (an `OSError`: logged only in asyncio's debug mode). A charger
whose client certificate OpenSSL refuses (untrusted CA, broken chain) or that cannot agree
on TLS at all (TLS 1.0 only, our CA missing from its store) would look merely offline.

So the listener is plain TCP and each connection starts TLS itself (`loop.start_tls`, the
same SSL protocol asyncio uses for `ssl=`), with the peer address at hand. A failure is a
refusal by source (refusals.py: counted by reason, logged once per source and reason per
interval): `client_cert_untrusted` / `client_cert_expired` with OpenSSL's verify code and
message, `tls_handshake_failed` with the TLS alert for anything else. OpenSSL keeps nothing
of a certificate it refuses, so these carry no subject; a certificate it accepts is judged
after the handshake (clientcert.py), where subject, issuer and fingerprint are logged.

Why not verify in Python instead: Python's ssl has no verify callback, so a server that asks
for a client certificate (CERT_OPTIONAL) cannot accept an unverifiable one and judge it
later; only CERT_NONE skips verification, and then no certificate is asked for at all.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from typing import Any, ClassVar

from websockets.asyncio.server import ServerConnection

from cpo_gateway import logs
from cpo_gateway.csms.refusals import Refusal, Refusals
from cpo_gateway.tasks import TaskSet

log = logs.get(__name__)
# OpenSSL X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED (with
# clientcert.NO_CHECK_TIME set they do not occur for the chain itself: dates are judged
# after the handshake, where the charge point id is known).
_DATE_ERRORS = frozenset({9, 10})


class TlsGate:
    """Starts TLS on each accepted connection and reports the handshakes that fail."""

    __slots__ = (
        "_context",
        "_refusals",
        "_tasks",
        "_timeout_s",
        "handshakes_abandoned",
        "handshakes_failed",
    )

    def __init__(
        self, context: ssl.SSLContext, refusals: Refusals, tasks: TaskSet, *, timeout_s: float
    ) -> None:
        self._context = context
        self._refusals = refusals
        self._tasks = tasks
        self._timeout_s = timeout_s
        self.handshakes_failed = 0  # refused: counted by reason in refusals too
        self.handshakes_abandoned = 0  # the peer left or stalled before TLS was up

    def connection_class(self) -> type[ServerConnection]:
        """websockets' connection, made to wait for the TLS handshake before it starts."""
        return type("TlsServerConnection", (_TlsServerConnection,), {"gate": self})

    async def handshake(self, conn: _TlsServerConnection, raw: asyncio.Transport) -> None:
        peer = raw.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        loop = asyncio.get_running_loop()
        try:
            wrapped = await loop.start_tls(
                raw,
                conn,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout_s,
                ssl_shutdown_timeout=self._timeout_s,
            )
        except ssl.SSLCertVerificationError as exc:
            self._failed(raw)
            code = exc.verify_code
            kind = (
                Refusal.CLIENT_CERT_EXPIRED
                if code in _DATE_ERRORS
                else Refusal.CLIENT_CERT_UNTRUSTED
            )
            self._refusals.refuse(
                kind,
                source,
                source=source,
                reason=exc.verify_message or str(exc),
                verify_code=code,
                security_profile=3,
            )
            return
        except ssl.SSLError as exc:
            self._failed(raw)
            self._refusals.refuse(
                Refusal.TLS_HANDSHAKE_FAILED,
                source,
                exc.reason or "",
                source=source,
                reason=exc.reason or str(exc),
            )
            return
        except (OSError, TimeoutError) as exc:
            # The peer went away or stalled before TLS was up: a TCP probe, a load balancer's
            # health check, a charger losing its link. Not a refusal; closed all the same.
            self.handshakes_abandoned += 1
            raw.abort()
            log.debug("ocpp.tls_aborted", source=source, error=repr(exc))
            return
        if wrapped is None or wrapped.is_closing():
            raw.abort()
            return
        conn.tls_ready(wrapped)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro, name="ocpp-tls-handshake")

    def _failed(self, raw: asyncio.Transport) -> None:
        self.handshakes_failed += 1
        raw.abort()


class _TlsServerConnection(ServerConnection):
    gate: ClassVar[TlsGate]
    tls_up = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Read nothing until TLS wraps the socket (start_tls resumes reading).
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self.gate.spawn(self.gate.handshake(self, transport))

    def tls_ready(self, transport: asyncio.Transport) -> None:
        """The handshake is done: websockets takes over, as if TLS had been asyncio's."""
        self.tls_up = True
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        # A failed handshake reports its end too; websockets never started on it.
        if self.tls_up:
            super().connection_lost(exc)
