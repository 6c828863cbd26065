"""OCPI 2.2.1 transport: the response envelope, status codes, the credentials-token header,
request ids and routing headers, and the aiohttp middleware every OCPI route runs behind.

Every answer of the OCPI listener, success or refusal, is the envelope
``{"data": ..., "status_code": 1000, "status_message": "...", "timestamp": "...Z"}``
(`data` left out where the spec names none, e.g. errors). A handler raises `OcpiError` for
anything a peer did wrong, with a message that names the field
("country_code: expected 2 letters, got 'N'"); the middleware renders it, echoes
`X-Request-ID` / `X-Correlation-ID`, swaps the routing headers for the answer, logs one
`ocpi.request` line and counts the request by module and OCPI status code.

The credentials token travels as ``Authorization: Token <base64(utf-8 token)>`` (2.2.1,
transport_and_format "Authorization header"). The spec's own note says many 2.1.1 and 2.2
peers send the token unencoded and that an implementation wanting to work with them must
tell the two apart "by trial and error or configuration flags": `token_candidates` yields the
decoded token first and the raw one second, and the server accepts whichever matches a known
token (a raw token can never be mistaken for another partner's: both are looked up).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from cpo_gateway import logs

log = logs.get(__name__)

REQUEST_ID = "X-Request-ID"
CORRELATION_ID = "X-Correlation-ID"
TO_COUNTRY = "OCPI-to-country-code"
TO_PARTY = "OCPI-to-party-id"
FROM_COUNTRY = "OCPI-from-country-code"
FROM_PARTY = "OCPI-from-party-id"
VERSION = "2.2.1"
# Module identifiers of 2.2.1 (version_information_endpoint, ModuleID). A request's module is
# the first path segment that is one of these: the metric's label set stays bounded whatever
# paths strangers try.
MODULES = frozenset(
    {
        "cdrs",
        "chargingprofiles",
        "commands",
        "credentials",
        "hubclientinfo",
        "locations",
        "sessions",
        "tariffs",
        "tokens",
    }
)
# Configuration modules are never routed: OCPI-to/from headers do not apply to them.
CONFIGURATION_MODULES = frozenset({"versions", "credentials", "hubclientinfo"})
_ID_MAX = 64
_SANE_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{_ID_MAX}}}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_PARTY = re.compile(r"[A-Za-z0-9]{3}")
# A credentials token is a string(64) of printable ASCII without blanks (types: string).
TOKEN_MAX = 64
_TOKEN = re.compile(rf"[!-~]{{1,{TOKEN_MAX}}}")


class OcpiStatus(enum.IntEnum):
    """OCPI status codes (status_codes: 1xxx success, 2xxx client errors, 3xxx server
    errors)."""

    SUCCESS = 1000
    CLIENT_ERROR = 2000
    INVALID_PARAMETERS = 2001
    NOT_ENOUGH_INFORMATION = 2002
    UNKNOWN_LOCATION = 2003
    UNKNOWN_TOKEN = 2004
    SERVER_ERROR = 3000
    UNABLE_TO_USE_CLIENT_API = 3001
    UNSUPPORTED_VERSION = 3002
    NO_MATCHING_ENDPOINTS = 3003


class OcpiError(Exception):
    """A request-level refusal: its OCPI status, a message naming the field, the HTTP status."""

    def __init__(self, status: OcpiStatus, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status

    @classmethod
    def invalid(cls, field: str, expected: str, got: object, http_status: int = 200) -> OcpiError:
        """2001 for one field: ``field: expected ..., got ...`` (the value shortened).

        HTTP 200 by default: status_codes says a request that is valid JSON and addresses an
        existing resource "MUST NOT" get an HTTP error, its fault is told by the OCPI code
        (only a body that is not JSON at all is HTTP 400, see `read_json`)."""
        shown = repr(got)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return cls(
            OcpiStatus.INVALID_PARAMETERS, f"{field}: expected {expected}, got {shown}", http_status
        )

    @classmethod
    def missing(cls, field: str, http_status: int = 200) -> OcpiError:
        return cls(OcpiStatus.INVALID_PARAMETERS, f"{field}: required field missing", http_status)

    @classmethod
    def unauthorized(cls, message: str) -> OcpiError:
        return cls(OcpiStatus.CLIENT_ERROR, message, http_status=401)

    @classmethod
    def forbidden(cls, message: str) -> OcpiError:
        return cls(OcpiStatus.CLIENT_ERROR, message, http_status=403)


class OcpiResponse(web.Response):
    """An envelope on the wire, with its OCPI status and message kept for the log and the
    counters (the middleware reads them back)."""

    def __init__(
        self, body: dict[str, object], *, http_status: int, headers: Mapping[str, str] | None
    ) -> None:
        super().__init__(
            status=http_status,
            body=orjson.dumps(body),
            content_type="application/json",
            headers=headers,
        )
        code = body.get("status_code")
        self.ocpi_status = code if isinstance(code, int) else 0
        message = body.get("status_message")
        self.ocpi_message = message if isinstance(message, str) else None


def timestamp(now: datetime | None = None) -> str:
    """An OCPI DateTime in UTC: ``2015-06-30T21:59:59Z`` (whole seconds; the spec allows
    fractions, no peer needs them in an envelope)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(
    data: object = None,
    status: OcpiStatus = OcpiStatus.SUCCESS,
    message: str = "Success",
    now: datetime | None = None,
) -> dict[str, object]:
    """The response format; `data` is left out when None (transport_and_format advises
    leaving it unset where the spec names none)."""
    body: dict[str, object] = {}
    if data is not None:
        body["data"] = data
    body["status_code"] = int(status)
    body["status_message"] = message
    body["timestamp"] = timestamp(now)
    return body


def ocpi_json_response(
    data: object = None,
    status: OcpiStatus = OcpiStatus.SUCCESS,
    message: str = "Success",
    *,
    http_status: int = 200,
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> OcpiResponse:
    """An envelope as an aiohttp response."""
    return OcpiResponse(
        envelope(data, status, message, now), http_status=http_status, headers=headers
    )


def encode_token(token: str) -> str:
    """The Authorization header's value for a credentials token (2.2.1: base64 of UTF-8)."""
    return "Token " + base64.b64encode(token.encode("utf-8")).decode("ascii")


def _header_parameter(value: str | None) -> str:
    if value is None or not value.strip():
        raise OcpiError.unauthorized("Authorization: header missing, expected 'Token <token>'")
    scheme, _, parameter = value.strip().partition(" ")
    if scheme.lower() != "token" or not parameter.strip():
        raise OcpiError.unauthorized("Authorization: expected 'Token <base64 of the token>'")
    return parameter.strip()


def _decoded(parameter: str) -> str | None:
    try:
        raw = base64.b64decode(parameter.encode("ascii"), validate=True)
        # Spec examples were made with `echo`: a trailing newline is not part of the token.
        token = raw.decode("utf-8").rstrip("\r\n")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    return token if _TOKEN.fullmatch(token) else None


def decode_auth_header(value: str | None) -> str:
    """The credentials token of an Authorization header: base64-decoded (2.2.1), or the raw
    parameter when it is not base64 of a token (a 2.1.1/2.2-style peer). Raises a 401
    `OcpiError` when the header is missing or not of the Token scheme."""
    return token_candidates(value)[0]


def token_candidates(value: str | None) -> tuple[str, ...]:
    """What the header's token may be, most likely first: decoded, then raw (see the module
    docstring). Raises a 401 `OcpiError` when there is no usable token at all."""
    parameter = _header_parameter(value)
    decoded = _decoded(parameter)
    raw_ok = _TOKEN.fullmatch(parameter) is not None
    if decoded is not None and raw_ok and decoded != parameter:
        return (decoded, parameter)
    if decoded is not None:
        return (decoded,)
    if raw_ok:
        return (parameter,)
    raise OcpiError.unauthorized("Authorization: the token is not printable ASCII of 1 to 64")


def sane_id(value: str | None, new: Callable[[], str] = lambda: uuid.uuid4().hex) -> str:
    """A peer's X-Request-ID / X-Correlation-ID if it is 1 to 64 letters, digits or ``._:-``
    (anything else could forge log fields), else a new one."""
    if value is not None:
        given = value.strip(" \t")
        if _SANE_ID.fullmatch(given):
            return given
    return new()


@dataclass(frozen=True, slots=True)
class Party:
    """One OCPI party: an ISO 3166 alpha-2 country code and a 3-character party id
    (CiStrings: compared upper-cased)."""

    country_code: str
    party_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "country_code", self.country_code.upper())
        object.__setattr__(self, "party_id", self.party_id.upper())

    @classmethod
    def parse(cls, country_code: object, party_id: object, where: str = "") -> Party:
        """Validate both (errors name `where` + the field)."""
        if not isinstance(country_code, str) or not _COUNTRY.fullmatch(country_code):
            raise OcpiError.invalid(f"{where}country_code", "2 letters", country_code)
        if not isinstance(party_id, str) or not _PARTY.fullmatch(party_id):
            raise OcpiError.invalid(f"{where}party_id", "3 letters or digits", party_id)
        return cls(country_code, party_id)

    def __str__(self) -> str:
        return f"{self.country_code}*{self.party_id}"


def routing_from(request: web.Request) -> Party | None:
    """The request's OCPI-from-* party, None when both headers are absent; one without the
    other, or a malformed one, is 2001 naming the header."""
    return _routing(request, FROM_COUNTRY, FROM_PARTY)


def routing_to(request: web.Request) -> Party | None:
    return _routing(request, TO_COUNTRY, TO_PARTY)


def _routing(request: web.Request, country_header: str, party_header: str) -> Party | None:
    country = request.headers.get(country_header)
    party = request.headers.get(party_header)
    if country is None and party is None:
        return None
    if country is None:
        raise OcpiError.missing(country_header)
    if party is None:
        raise OcpiError.missing(party_header)
    if not _COUNTRY.fullmatch(country.strip()):
        raise OcpiError.invalid(country_header, "2 letters", country)
    if not _PARTY.fullmatch(party.strip()):
        raise OcpiError.invalid(party_header, "3 letters or digits", party)
    return Party(country.strip(), party.strip())


def check_from(request: web.Request, allowed: frozenset[Party]) -> Party | None:
    """Refuse a request whose OCPI-from-* party is not one of the calling partner's own
    roles (from its credentials): a partner acts only as itself. Returns that party."""
    sender = routing_from(request)
    if sender is not None and sender not in allowed:
        raise OcpiError.forbidden(f"{FROM_COUNTRY}/{FROM_PARTY}: {sender} is not a party of yours")
    return sender


def module_of(path: str) -> str:
    """The OCPI module a request path addresses, for logs and metrics: the first segment
    that is a module identifier; ``versions`` for the versions list and version details;
    ``unknown`` for anything else."""
    segments = [s for s in path.split("/") if s]
    for segment in segments:
        if segment in MODULES:
            return segment
    if segments and (segments[-1] == "versions" or segments[-1] == VERSION):
        return "versions"
    return "unknown"


class RequestCounts:
    """Requests answered, by (module, OCPI status code): what /metrics exposes."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    def add(self, module: str, status: int) -> None:
        key = (module, status)
        self._counts[key] = self._counts.get(key, 0) + 1

    def items(self) -> list[tuple[tuple[str, int], int]]:
        return list(self._counts.items())

    def get(self, module: str, status: int) -> int:
        return self._counts.get((module, status), 0)


_HTTP_ERRORS: dict[int, tuple[OcpiStatus, str]] = {
    404: (OcpiStatus.CLIENT_ERROR, "path: no such OCPI endpoint"),
    405: (OcpiStatus.CLIENT_ERROR, "method: not allowed on this endpoint"),
    413: (OcpiStatus.CLIENT_ERROR, "body: too large"),
}


def _from_http_exception(exc: web.HTTPException) -> OcpiError:
    status, message = _HTTP_ERRORS.get(exc.status, (OcpiStatus.CLIENT_ERROR, exc.reason))
    if exc.status >= 500:
        status = OcpiStatus.SERVER_ERROR
    return OcpiError(status, message, http_status=exc.status)


def middleware(
    counts: RequestCounts,
    ours: Party | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Middleware:
    """The OCPI listener's middleware (see the module docstring).

    `ours`: when given, an OCPI-to-* naming another party of a functional module is refused
    (403, 2000): the gateway is not a hub and routes nothing on.
    """

    @web.middleware
    async def ocpi(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        rid = sane_id(request.headers.get(REQUEST_ID))
        cid = sane_id(request.headers.get(CORRELATION_ID), new=lambda: rid)
        module = module_of(request.path)
        with logs.bound(request_id=rid, correlation_id=cid):
            response: web.StreamResponse
            try:
                if ours is not None and module not in CONFIGURATION_MODULES:
                    target = routing_to(request)
                    if target is not None and target != ours:
                        raise OcpiError.forbidden(
                            f"{TO_COUNTRY}/{TO_PARTY}: {target} is not served here"
                        )
                response = await handler(request)
            except OcpiError as exc:
                response = _refusal(exc, now())
            except web.HTTPException as exc:
                response = _refusal(_from_http_exception(exc), now())
            except Exception:
                log.exception("ocpi.internal_error", module=module, method=request.method)
                response = _refusal(
                    OcpiError(OcpiStatus.SERVER_ERROR, "internal error", http_status=500), now()
                )
            status = response.ocpi_status if isinstance(response, OcpiResponse) else 0
            counts.add(module, status)
            log.info(
                "ocpi.request",
                module=module,
                method=request.method,
                http_status=response.status,
                status_code=status,
                message=response.ocpi_message if isinstance(response, OcpiResponse) else None,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
        response.headers[REQUEST_ID] = rid
        response.headers[CORRELATION_ID] = cid
        _answer_routing(request, response, ours, module)
        return response

    return ocpi


def _refusal(exc: OcpiError, now: datetime) -> OcpiResponse:
    response = ocpi_json_response(
        None, exc.status, exc.message, http_status=exc.http_status, now=now
    )
    if exc.http_status == 401:
        response.headers["WWW-Authenticate"] = "Token"
    return response


def _answer_routing(
    request: web.Request, response: web.StreamResponse, ours: Party | None, module: str
) -> None:
    """A functional module's answer goes back to the requester (transport_and_format, Party
    to Party: the response's TO headers are the request's FROM party, its FROM headers us)."""
    if module in CONFIGURATION_MODULES or ours is None:
        return
    try:
        sender = routing_from(request)
    except OcpiError:
        sender = None
    if sender is not None:
        response.headers[TO_COUNTRY] = sender.country_code
        response.headers[TO_PARTY] = sender.party_id
    response.headers[FROM_COUNTRY] = ours.country_code
    response.headers[FROM_PARTY] = ours.party_id


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or 2001 naming the body (the app's client_max_size bounds
    it: too large is 413 before this parses a byte)."""
    raw = await request.read()
    if not raw:
        raise OcpiError(OcpiStatus.INVALID_PARAMETERS, "body: expected a JSON object, got nothing")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise OcpiError(OcpiStatus.INVALID_PARAMETERS, "body: not valid JSON") from None
