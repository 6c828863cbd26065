"""The id of one OIOI request: the peer's `X-Request-ID` when it is sane, else a new one.

Bound to every log line of the request (the core's included) and echoed in the answer's
`X-Request-ID`, so one request can be followed across the gateway's log and the EMP's.
A peer's id is taken only if it is 1 to `MAX_LENGTH` characters of letters, digits and
``._:-`` (UUIDs, ULIDs, W3C trace ids, hex): anything else could forge log fields, split
lines or grow the log, and is replaced, not repaired.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

HEADER = "X-Request-ID"
MAX_LENGTH = 64
_SANE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")


def request_id(header: str | None, new: Callable[[], str] = lambda: uuid.uuid4().hex) -> str:
    """The peer's id if it is sane (surrounding blanks ignored), else ``new()``."""
    if header is not None:
        given = header.strip(" \t")
        if _SANE.fullmatch(given):
            return given
    return new()
