"""Signed meter readings out of sampled values, checked against the lengths a CDR carries.

A signed reading that does not fit (a blob over 5000 characters, a public key over 512, an
encoding name over 36) is dropped with a warning: the transaction message that carried it is
still recorded and answered, with its plain reading.
"""

from __future__ import annotations

from cpo_gateway import logs
from cpo_gateway.bridge.model import SignedReading

log = logs.get(__name__)

MAX_DATA = 5000
MAX_PLAIN = 512
MAX_ENCODING = 36
MAX_PUBLIC_KEY = 512
OCMF = "OCMF"


def encoding_of(data: str) -> str:
    """The encoding a 1.6 SignedData blob is in: 1.6 names none, OCMF names itself."""
    return OCMF if data.startswith("OCMF|") else "Unknown"


def plain_wh(wh: float) -> str:
    """The reading beside a signature, as text: Wh, without a ".0" on whole numbers."""
    return str(int(wh)) if wh.is_integer() and abs(wh) < 1e15 else repr(wh)


def signed_reading(
    path: str,
    data: object,
    plain: str,
    encoding: object,
    public_key: object = None,
    method: object = None,
) -> SignedReading | None:
    """The reading, or None (logged, naming the field) when a part is missing or too long."""
    checks = (
        ("signedMeterData", data, MAX_DATA, True),
        ("encodingMethod", encoding, MAX_ENCODING, True),
        ("publicKey", public_key, MAX_PUBLIC_KEY, False),
        ("signingMethod", method, MAX_PLAIN, False),
    )
    for name, value, limit, required in checks:
        if value is None and not required:
            continue
        if type(value) is not str or not value:
            log.warning("meter.signed_dropped", field=f"{path}.{name}", reason="not a string")
            return None
        if len(value) > limit:
            log.warning(
                "meter.signed_dropped",
                field=f"{path}.{name}",
                reason=f"{len(value)} characters, at most {limit}",
            )
            return None
    assert isinstance(data, str) and isinstance(encoding, str)
    return SignedReading(
        data=data,
        plain=plain[:MAX_PLAIN],
        encoding=encoding,
        public_key=public_key if isinstance(public_key, str) else None,
        method=method if isinstance(method, str) else None,
    )
