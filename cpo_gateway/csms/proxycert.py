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

A charger issued by a sub-CA: the leaf header may hold leaf + sub-CAs (several PEM blocks,
leaf first), and `client_chain_header` the sub-CAs the charger sent, as base64 of their
concatenated DER (HAProxy `%[ssl_c_chain_der,base64]`, which leaves the leaf out) or PEM
blocks. nginx forwards only the leaf: its sub-CA then belongs in `client_ca_file`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable
from urllib.parse import unquote

from cryptography import x509

MAX_HEADER = 16 * 1024  # a charger certificate is 1-2 KiB, a chain of four well under this
MAX_CERTS = 4  # leaf + sub-CAs: OCPP PKIs are two or three levels deep
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
    """The DER certificate a proxy put in header `name` (the first, when it holds several);
    CertHeaderError when unreadable."""
    return parse_cert_chain(name, value)[0]


def parse_cert_chain(name: str, value: str) -> list[bytes]:
    """The DER certificates in header `name`, in order (at least one, at most MAX_CERTS);
    CertHeaderError naming the header when any is unreadable."""
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
        ders = [_b64(name, body) for body in _pem_bodies(name, text)]
    else:
        ders = _split_der(name, _b64(name, text))
    if len(ders) > MAX_CERTS:
        raise CertHeaderError(f"{name}: more than {MAX_CERTS} certificates")
    for i, der in enumerate(ders):
        try:
            x509.load_der_x509_certificate(der)
        except ValueError as exc:
            which = "" if len(ders) == 1 else f" (certificate {i + 1})"
            raise CertHeaderError(f"{name}: not a DER X.509 certificate{which} ({exc})") from exc
    return ders


def _pem_bodies(name: str, text: str) -> list[str]:
    bodies: list[str] = []
    at = text.find(_BEGIN)
    while at >= 0 and len(bodies) <= MAX_CERTS:
        begin = at + len(_BEGIN)
        end = text.find(_END, begin)
        if end < 0:
            raise CertHeaderError(f"{name}: PEM without {_END}")
        bodies.append(text[begin:end])
        at = text.find(_BEGIN, end + len(_END))
    return bodies


def _b64(name: str, body: str) -> bytes:
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertHeaderError(f"{name}: not base64 ({exc})") from exc
    if not der:
        raise CertHeaderError(f"{name}: empty")
    return der


def _split_der(name: str, data: bytes) -> list[bytes]:
    """Concatenated DER certificates (each a SEQUENCE with a definite length) apart."""
    out: list[bytes] = []
    at = 0
    while at < len(data) and len(out) <= MAX_CERTS:
        if data[at] != 0x30 or at + 2 > len(data):
            raise CertHeaderError(f"{name}: not a DER X.509 certificate (byte {at})")
        first = data[at + 1]
        head, size = 2, first
        if first & 0x80:
            count = first & 0x7F
            if not 1 <= count <= 3 or at + 2 + count > len(data):
                raise CertHeaderError(f"{name}: not a DER X.509 certificate (length at {at})")
            head, size = 2 + count, int.from_bytes(data[at + 2 : at + 2 + count], "big")
        end = at + head + size
        if end > len(data):
            raise CertHeaderError(f"{name}: truncated DER certificate (byte {at})")
        out.append(data[at:end])
        at = end
    return out
