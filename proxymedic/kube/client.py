"""An async Kubernetes API client on aiohttp: get, list, watch, create, merge-patch, delete.

Kopf does the operator's watching; this client does the writes of both components and the
agent's watch. It is small on purpose: typed errors, merge-patch only, JSON objects as dicts.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp

from proxymedic.kube.resources import Resource

JsonObject = dict[str, Any]
T = TypeVar("T")
REQUEST_TIMEOUT = 30.0
"""Seconds for one non-watch request, connection included."""
MAX_RETRY_AFTER = 60.0
"""The longest wait a server's Retry-After can impose on one retry."""


class ApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        """Seconds the server asked the client to wait before retrying (429 and 503), if it said."""

    @property
    def transient(self) -> bool:
        """Worth retrying: throttled, timed out, or a server-side failure."""
        return self.status in (429, 500, 502, 503, 504)


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    """409: the object exists already, or the resourceVersion precondition failed."""


class GoneError(ApiError):
    """410: the requested resourceVersion is too old; list again."""


def parse_retry_after(header: str | None, body: Any = None) -> float | None:
    """The wait a server asks for: the Retry-After header (seconds or an HTTP date), else the
    Status's ``details.retryAfterSeconds``; bounded by MAX_RETRY_AFTER."""
    seconds: float | None = None
    if header:
        try:
            seconds = float(header)
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(header).timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = None
    if seconds is None and isinstance(body, dict):
        details = body.get("details")
        value = details.get("retryAfterSeconds") if isinstance(details, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
    if seconds is None or seconds != seconds:  # absent, or NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _error_for(status: int, body: Any, headers: Mapping[str, str] | None = None) -> ApiError:
    reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
    message = str(body.get("message", "")) if isinstance(body, dict) else str(body)[:500]
    cls = {404: NotFoundError, 409: ConflictError, 410: GoneError}.get(status, ApiError)
    retry_after = (
        parse_retry_after((headers or {}).get("Retry-After"), body) if status in (429, 503) else None
    )
    return cls(status, reason or "Error", message, retry_after)


@dataclass(frozen=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    object: JsonObject

    @property
    def resource_version(self) -> str:
        """The object's resourceVersion; "" when a malformed object carries none."""
        meta = self.object.get("metadata") if isinstance(self.object, dict) else None
        return str(meta.get("resourceVersion", "")) if isinstance(meta, dict) else ""


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate to it."""

    server: str
    token: str | Callable[[], str] | None = field(default=None, repr=False)
    """A bearer token, or a function returning the current one (a rotated service-account token).
    Left out of the repr: a logged Connection must not carry the credential."""
    ssl_context: ssl.SSLContext | bool = True
    """An SSL context, True for the system CAs, or False to skip verification (test servers only)."""
    tls_server_name: str | None = None
    """The name the server's certificate is checked for, when not the server's host (a kubeconfig's
    ``tls-server-name``: an API server reached through a tunnel or a relay)."""


class KubeClient:
    def __init__(self, connection: Connection, session: aiohttp.ClientSession | None = None) -> None:
        self._connection = connection
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=None)
        )
        self._base_headers = {"Accept": "application/json"}

    @property
    def _headers(self) -> dict[str, str]:
        headers = dict(self._base_headers)
        token = self._connection.token
        if callable(token):
            token = token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = self._headers
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        async with self._session.request(
            method,
            self._connection.server + path,
            params=params,
            data=data,
            headers=headers,
            ssl=self._connection.ssl_context,
            server_hostname=self._connection.tls_server_name,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            text = await response.text()
            try:
                payload = json.loads(text) if text else None
            except json.JSONDecodeError:
                payload = text
            if response.status >= 400:
                raise _error_for(response.status, payload, response.headers)
            return payload

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> JsonObject:
        result: JsonObject = await self._request("GET", resource.path(namespace, name))
        return result

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[JsonObject], str]:
        """All objects and the list's resourceVersion, to start a watch from."""
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        result = await self._request("GET", resource.path(namespace), params=params)
        return list(result.get("items", [])), str(result.get("metadata", {}).get("resourceVersion", ""))

    async def watch(
        self,
        resource: Resource,
        resource_version: str,
        namespace: str | None = None,
        *,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the stream (after timeout_seconds).

        Raises GoneError when the version is too old: the caller lists again.
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        async with self._session.get(
            self._connection.server + resource.path(namespace),
            params=params,
            headers=self._headers,
            ssl=self._connection.ssl_context,
            server_hostname=self._connection.tls_server_name,
            # A silent stream is a dead stream: never wait much longer than the server promised.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30),
        ) as response:
            if response.status >= 400:
                text = await response.text()
                try:
                    body = json.loads(text) if text else {}
                except json.JSONDecodeError:
                    body = text
                raise _error_for(response.status, body, response.headers)
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)  # a JSONDecodeError is a ValueError: the caller relists
                if not (
                    isinstance(event, dict)
                    and isinstance(event.get("type"), str)
                    and isinstance(event.get("object"), dict)
                ):
                    raise ValueError(f"malformed watch event: {line[:200]!r}")
                if event["type"] == "ERROR":
                    status = event["object"]
                    code = status.get("code")
                    raise _error_for(code if isinstance(code, int) else 500, status)
                yield WatchEvent(event["type"], event["object"])

    async def create(self, resource: Resource, obj: JsonObject, namespace: str | None = None) -> JsonObject:
        result: JsonObject = await self._request("POST", resource.path(namespace), body=obj)
        return result

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: JsonObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> JsonObject:
        """A JSON merge patch (RFC 7386): null removes a key, lists are replaced whole."""
        result: JsonObject = await self._request(
            "PATCH",
            resource.path(namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )
        return result

    async def delete(
        self, resource: Resource, name: str, namespace: str | None = None, *, uid: str | None = None
    ) -> None:
        """Delete; with ``uid``, only that incarnation of the object (a precondition)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}} if uid else None
        await self._request("DELETE", resource.path(namespace, name), body=body)


async def with_backoff(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    base: float = 0.2,
    cap: float = 10.0,
    retry_on: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError),
) -> T:
    """Retry transient failures (connection errors, 429 and 5xx) with capped, jittered backoff,
    waiting at least as long as the server's Retry-After asks."""
    for attempt in range(attempts):
        try:
            return await call()
        except ApiError as exc:
            if not exc.transient or attempt == attempts - 1:
                raise
            delay = retry_delay(exc, random.uniform(0, min(cap, base * 2**attempt)))
        except retry_on:
            if attempt == attempts - 1:
                raise
            delay = random.uniform(0, min(cap, base * 2**attempt))
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def retry_delay(exc: BaseException, backoff: float) -> float:
    """The client's own backoff, or longer when the server asked for a longer wait (Retry-After)."""
    retry_after = exc.retry_after if isinstance(exc, ApiError) else None
    return backoff if retry_after is None else max(backoff, retry_after)
