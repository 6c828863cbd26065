"""Security profile 3 at the handshake: the certificate a charger presented, and its verdict.

The certificate comes from our own TLS layer (the chain OpenSSL verified) or, from a peer in
`[ocpp.tls] trusted_proxies` only, from the headers a TLS-terminating proxy set (proxycert.py:
the leaf, then any sub-CAs). Either way ClientCertPolicy (clientcert.py) decides; the server
turns a refusal into a 403 and a `security.client_cert_*` record.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from cpo_gateway.config import ClientCertConfig
from cpo_gateway.csms.clientcert import CertProblem, CertRefused, ClientCertPolicy, verified_chain
from cpo_gateway.csms.proxycert import CertHeaderError, is_trusted, parse_cert_chain, parse_networks
from cpo_gateway.csms.refusals import PROXY_HEADER_IGNORED, Refusals


class ClientCertGate:
    __slots__ = (
        "_cert_header",
        "_chain_header",
        "_policy",
        "_proxies",
        "_refusals",
        "proxy_headers_ignored",
    )

    def __init__(
        self, policy: ClientCertPolicy | None, certs: ClientCertConfig, refusals: Refusals
    ) -> None:
        """`policy` None: no client_ca_file, so no profile-3 charger can connect."""
        self._policy = policy
        self._proxies = parse_networks(certs.trusted_proxies)
        self._cert_header = certs.client_cert_header
        self._chain_header = certs.client_chain_header
        self._refusals = refusals
        self.proxy_headers_ignored = 0  # certificate headers from peers not trusted to set them

    def from_proxy(self, source: str, request: Request) -> bool:
        """Whether the peer is a trusted TLS-terminating proxy; a certificate header from
        anyone else is ignored, and logged once per source and interval."""
        if is_trusted(source, self._proxies):
            return True
        if self._cert_header in request.headers:
            self.proxy_headers_ignored += 1
            self._refusals.remark(
                PROXY_HEADER_IGNORED, source, source=source, header=self._cert_header
            )
        return False

    def judge(
        self, conn: ServerConnection, request: Request, cp_id: str, via_proxy: bool
    ) -> CertRefused | None:
        """None when the presented certificate may speak for `cp_id`; else why not."""
        if self._policy is None:
            return CertRefused(CertProblem.UNTRUSTED, "no [ocpp.tls] client_ca_file")
        if via_proxy:
            try:
                presented = self._forwarded_chain(request)
            except CertHeaderError as exc:
                return CertRefused(CertProblem.UNREADABLE, str(exc))
            leaf = presented[0] if presented else None
            return self._policy.check(leaf, cp_id, presented[1:])
        tls = conn.transport.get_extra_info("ssl_object")
        return self._policy.check_verified(verified_chain(tls) if tls is not None else [], cp_id)

    def _forwarded_chain(self, request: Request) -> list[bytes]:
        """Leaf first, then the sub-CAs, from the headers a trusted proxy set."""
        value = _single(request, self._cert_header)
        if value is None:
            return []
        presented = parse_cert_chain(self._cert_header, value)
        more = _single(request, self._chain_header)
        if more is not None and more.strip():
            presented += parse_cert_chain(self._chain_header, more)
        return presented


def _single(request: Request, name: str) -> str | None:
    """Header `name`, or None when absent; CertHeaderError when sent more than once (a
    charger's own beside the proxy's: which one the proxy vouches for is unknown)."""
    values = request.headers.get_all(name)
    if len(values) > 1:
        raise CertHeaderError(f"{name}: sent {len(values)} times")
    return values[0] if values else None
