"""OIOI result codes (spec section "OIOI Response Codes") and the HTTP status/code pair each
business outcome of the core is answered with.

Codes are hierarchical by their decimal digits: a reader must accept a more general code in
place of a specific one (181 "EVSE not found" may arrive as 180 "Entity not found" or as 100
"System error"). ``general_of`` gives the next more general code:

* a non-zero units digit is cleared (181 -> 180, 312 -> 310, 11 -> 10);
* otherwise a non-zero tens digit is cleared (180 -> 100, 10 -> 0);
* a class root (0, 100, 200, ..., 900) is its own general code.

Codes outside 0..999 have no hierarchy and are their own general code. Codes a peer sends that
the spec does not list are understood through ``nearest_known``: the code itself when listed,
else its nearest listed general code (189 -> 180), else None.
"""

from __future__ import annotations

from collections.abc import Iterator

from cpo_gateway.bridge.model import Outcome

SUCCESS = 0
SYSTEM_ERROR = 100
INVALID_API_KEY = 210
INVALID_PARTNER = 211
NOT_ALLOWED = 220
INVALID_FORMAT = 230

CODES: dict[int, str] = {
    0: "Success",
    11: "Successfully started a charging session",
    12: "Successfully authorized a charging session",
    100: "System error",
    101: "Database error",
    102: "System timeout",
    140: "Authentication failed: No positive authentication response",
    141: "Authentication failed: Invalid email or password",
    142: "Authentication failed: Invalid email",
    143: "Authentication failed: Email already exists",
    144: "Authentication failed: Email does not exist",
    145: "Authentication failed: User token not valid",
    180: "Entity not found",
    181: "EVSE not found",
    182: "Session not found",
    183: "Company not found",
    184: "Vehicle not found",
    185: "Subscription plan not found",
    186: "Group not found",
    187: "EVSE ID does not support direct pay",
    188: "EVSE ID does not support remote stop",
    190: "EVCO ID error",
    191: "EVCO ID not found",
    192: "EVCO ID locked",
    193: "EVCO ID has no valid payment method",
    200: "Client request error",
    210: "Invalid API key",
    211: "Invalid partner identifier",
    220: "API key not allowed to access the requested resource",
    230: "Invalid request format",
    300: "Operator system error",
    302: "Operator system timeout",
    310: "EVSE error",
    312: "EVSE timeout",
    320: "EVSE already in use",
    321: "No EV connected to EVSE",
    400: "Hub system error",
    402: "Hub system timeout",
    800: "Payment provider system error",
    802: "Payment provider system timeout",
    805: "This user is not allowed to use this method",
    830: "Invalid format",
    850: "Invalid payment method",
    860: "Bank transfer error",
    861: "Bank account not valid",
    862: "Invalid name",
    863: "Invalid IBAN",
    864: "Invalid BIC",
    870: "Credit card error",
    871: "Credit card not valid",
    872: "Invalid card holder name",
    874: "Invalid credit card number",
    875: "Invalid expiration date",
    876: "Invalid CVC",
    880: "PayPal error",
}

# System errors and timeouts of any party: the peer could not process the message now, so a
# later attempt may succeed. Every other error code is an answer about the message itself.
TRANSIENT_CODES = frozenset({100, 101, 102, 300, 302, 400, 402, 800, 802})

OUTCOME_CODES: dict[Outcome, tuple[int, int]] = {
    Outcome.OK: (200, SUCCESS),
    Outcome.EVSE_NOT_FOUND: (200, 181),
    Outcome.SESSION_NOT_FOUND: (200, 182),
    Outcome.EVSE_ERROR: (200, 310),
    Outcome.EVSE_TIMEOUT: (200, 312),
    Outcome.EVSE_IN_USE: (200, 320),
    Outcome.NOT_ALLOWED: (403, NOT_ALLOWED),
    Outcome.BAD_USER: (200, 140),
}


def is_success(code: int) -> bool:
    """Any 0xx code is a success (0, 11, 12, and codes the spec may add later)."""
    return 0 <= code <= 99


def general_of(code: int) -> int:
    """The next more general code by the digit rule in the module docstring."""
    if not 0 <= code <= 999:
        return code
    if code % 10:
        return code - code % 10
    if code % 100:
        return code - code % 100
    return code


def lineage(code: int) -> Iterator[int]:
    """The code, then each more general code up to its class root (181, 180, 100)."""
    while True:
        yield code
        parent = general_of(code)
        if parent == code:
            return
        code = parent


def nearest_known(code: int) -> int | None:
    """The code itself if listed, else its nearest listed general code, else None."""
    for candidate in lineage(code):
        if candidate in CODES:
            return candidate
    return None


def is_transient(code: int) -> bool:
    """A system error or timeout (100, 102, 300, ... or an unlisted code under them)."""
    return nearest_known(code) in TRANSIENT_CODES


def belongs_to(code: int, general: int) -> bool:
    """Whether ``general`` is the code itself or one of its more general codes."""
    return general in lineage(code)


def describe(code: int) -> str:
    """A human-readable description; unlisted codes are described by their nearest general."""
    if code in CODES:
        return CODES[code]
    known = nearest_known(code)
    if known is not None:
        return f"{CODES[known]} (unlisted code {code})"
    return f"Unknown result code {code}"
