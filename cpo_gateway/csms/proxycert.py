"""A client certificate forwarded by a TLS-terminating proxy, and who may forward one.

When HAProxy or nginx terminates TLS in front of the gateway, the charger's certificate
reaches us only as a request header the proxy sets. Anybody can send that header, so it is
read only from the peers listed in `[ocpp.tls] trusted_proxies` (opt-in, addresses or
CIDR blocks); from any other peer it is ignored. The proxy must overwrite the header on
every request (the examples in config/ do), or a charger could choose its own.

Accepted encodings (what the example configs send):
- base64 of the DER certificate: HAProxy `%[ssl_c_der,base64]`;
- URL-encoded PEM: nginx `$ssl_client_escaped_cert`;
- PEM with its line breaks turned into spaces, or a plain PEM, optionally in quotes.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable
from urllib.parse import unquote

from cryptography import x509

MAX_HEADER = 16 * 1024  # a charger certificate is 1-2 KiB; a chain more, but we take one
_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CertHeaderError(ValueError):
    """The header is not a certificate in an accepted encoding; the message names it."""


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """'10.0.0.5' or '10.0.0.0/24' each; ValueError names the bad entry."""
    out: list[Network] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address or CIDR block ({exc})") from exc
    return tuple(out)


def is_trusted(source: str, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket reports ::ffff:10.0.0.5
    return any(address in net for net in networks)


def parse_cert_header(name: str, value: str) -> bytes:
    """The DER certificate a proxy put in header `name`; CertHeaderError when unreadable."""
    if len(value) > MAX_HEADER:
        raise CertHeaderError(f"{name}: longer than {MAX_HEADER} characters")
    text = value.strip().strip('"').strip()
    if not text:
        raise CertHeaderError(f"{name}: empty")
    if "%" in text:
        try:
            text = unquote(text.encode("ascii").decode("ascii"), errors="strict")
        except UnicodeError as exc:
            raise CertHeaderError(f"{name}: bad URL encoding ({exc})") from exc
    if _BEGIN in text:
        begin = text.index(_BEGIN) + len(_BEGIN)
        end = text.find(_END, begin)
        if end < 0:
            raise CertHeaderError(f"{name}: PEM without {_END}")
        body = "".join(text[begin:end].split())
    else:
        body = "".join(text.split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertHeaderError(f"{name}: not base64 ({exc})") from exc
    try:
        x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertHeaderError(f"{name}: not a DER X.509 certificate ({exc})") from exc
    return der
