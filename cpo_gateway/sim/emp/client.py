"""What an EMP sends a CPO: session-start, session-stop and rfid-post, over real HTTP."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson

JsonBody = dict[str, Any]


def session_start_body(evse_id: str, evco_id: str, *, identifier_type: str = "evco-id") -> JsonBody:
    user = {"identifier-type": identifier_type, "identifier": evco_id}
    return {"session-start": {"user": user, "connector-id": evse_id}}


def session_stop_body(evse_id: str, evco_id: str, session_id: str | None = None) -> JsonBody:
    call: JsonBody = {
        "user": {"identifier-type": "evco-id", "identifier": evco_id},
        "connector-id": evse_id,
    }
    # Optional in the spec: without it the CPO stops whatever runs on the EVSE.
    if session_id is not None:
        call["session-id"] = session_id
    return {"session-stop": call}


def rfid_post_body(partner_identifier: str, uids: list[str]) -> JsonBody:
    return {"rfid-post": {"rfids": list(uids), "partner-identifier": partner_identifier}}


def curl_example(url: str, api_key: str, body: JsonBody) -> str:
    """A copy-paste shell command that posts `body` to `url` (every part shell-quoted)."""
    payload = orjson.dumps(body).decode()
    return " ".join(
        [
            "curl -sS -X POST",
            shlex.quote(url),
            "-H 'Content-Type: application/json'",
            "-H",
            shlex.quote(f"Authorization: key={api_key}"),
            "--data",
            shlex.quote(payload),
        ]
    )


class EmpClient:
    """Posts OIOI requests to a CPO endpoint. Owns one aiohttp session; use `async with`.

    Each call returns (HTTP status, JSON body). A body that is not a JSON object comes back
    as {"raw": <text>} so callers can assert on it instead of crashing.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def session_start(
        self, evse_id: str, evco_id: str, *, identifier_type: str = "evco-id"
    ) -> tuple[int, JsonBody]:
        body = session_start_body(evse_id, evco_id, identifier_type=identifier_type)
        return await self._post_json(body)

    async def session_stop(
        self, evse_id: str, evco_id: str, session_id: str | None = None
    ) -> tuple[int, JsonBody]:
        return await self._post_json(session_stop_body(evse_id, evco_id, session_id))

    async def rfid_post(self, partner_identifier: str, uids: list[str]) -> tuple[int, JsonBody]:
        return await self._post_json(rfid_post_body(partner_identifier, uids))

    async def raw(
        self, body: bytes | JsonBody, *, headers: Mapping[str, str | None] | None = None
    ) -> tuple[int, JsonBody | bytes]:
        """Post anything. `headers` override the defaults; a None value removes that header.

        Answers the parsed JSON object, or the bytes when the answer is not one.
        """
        status, data = await self._post(body, headers)
        parsed = _json_object(data)
        return status, parsed if parsed is not None else data

    def curl_session_start(self, evse_id: str, evco_id: str) -> str:
        return curl_example(self.url, self.api_key, session_start_body(evse_id, evco_id))

    def curl_session_stop(self, evse_id: str, evco_id: str, session_id: str | None = None) -> str:
        body = session_stop_body(evse_id, evco_id, session_id)
        return curl_example(self.url, self.api_key, body)

    async def _post_json(self, body: JsonBody) -> tuple[int, JsonBody]:
        status, data = await self._post(body, None)
        parsed = _json_object(data)
        return status, parsed if parsed is not None else {"raw": data.decode(errors="replace")}

    async def _post(
        self, body: bytes | JsonBody, headers: Mapping[str, str | None] | None
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("EmpClient is used outside `async with`")
        merged: dict[str, str | None] = {
            "Authorization": f"key={self.api_key}",
            "Content-Type": "application/json",
        }
        merged.update(headers or {})
        sent = {k: v for k, v in merged.items() if v is not None}
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with self._session.post(self.url, data=data, headers=sent) as response:
            return response.status, await response.read()


def _json_object(data: bytes) -> JsonBody | None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
