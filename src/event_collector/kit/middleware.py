"""The request context every route gets: a request id, request metrics, and the request guard.

:class:`RequestGuard` is what a request passes before anything reads its body, in this order:
the bearer token (401/400/403: an unauthenticated client never gets its body read, and a
token-less request is answered 401 before any media-type check), the tenant's rate limit (429),
the media type (415) and the declared size (413). :class:`RequestContextMiddleware` applies it
to FastAPI's routes and then reads the body with a counter, refusing it (413) as soon as it
passes the limit, chunked or not. The raw ingest routes (:mod:`kit.raw_routes`) authenticate in
their handler before reading the body with their own limit (:func:`read_body`), and call the
guard only for the ingest rate limit. A refused request whose body was not read is answered with
``Connection: close``: the server does not read on what the client keeps sending.
"""

from __future__ import annotations

import functools
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from event_collector.kit.errors import PayloadTooLarge, UnsupportedMediaType
from event_collector.kit.http import is_json_content_type
from event_collector.kit.logging import access_log, request_id_var
from event_collector.kit.metrics import request_metrics
from event_collector.kit.ratelimit import RateLimiter

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Unique per process start and request, without a uuid4 (a syscall) per request.
_request_ids = itertools.count()
_request_id_prefix = secrets.token_hex(6)
# Where the guard leaves the verified principal for the route's own scope check.
PRINCIPAL_STATE_KEY = "principal"


class Authenticated(Protocol):
    @property
    def tenant(self) -> str: ...


# (the app, the request headers) -> the verified principal, or an EventCollectorError
# (kit imports no domain: app.py hands the auth domain's function in).
Authenticate = Callable[[Any, Mapping[bytes, bytes]], Awaitable[Authenticated]]


def request_id_from(headers: dict[bytes, bytes]) -> str:
    """The caller's X-Request-ID (at most 64 characters), else a new one."""
    given = headers.get(b"x-request-id")
    if given:
        return given.decode("latin-1")[:64]
    return f"{_request_id_prefix}{next(_request_ids):010x}"


def record_request(method: str, route: str, status: int, started: float) -> None:
    seconds = time.perf_counter() - started
    request_metrics.record(method, route, status, seconds)
    if access_log.enabled:
        access_log.record(method, route, status, seconds)


@functools.lru_cache(maxsize=64)
def _is_json_media_type(content_type: bytes) -> bool:
    return is_json_content_type(content_type.decode("latin-1"))


def has_body(headers: Mapping[bytes, bytes]) -> bool:
    return headers.get(b"content-length", b"0") not in (b"0", b"") or (
        b"transfer-encoding" in headers
    )


def refuses_media_type(scope: Scope, headers: Mapping[bytes, bytes]) -> bool:
    """A body sent to the API that is not JSON gets 415 before anything parses it."""
    if scope["method"] not in _BODY_METHODS or not scope["path"].startswith("/api/"):
        return False
    content_type = headers.get(b"content-type")
    return has_body(headers) and not (content_type and _is_json_media_type(content_type))


def check_declared_size(headers: Mapping[bytes, bytes], limit: int) -> None:
    """A Content-Length over the limit is refused before a byte of the body is read."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyLimitExceeded(limit)


class BodyLimitExceeded(PayloadTooLarge):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds the limit of {limit} bytes")


class ClientDisconnected(Exception):
    """The client went away before sending its whole body."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, counted as it arrives: over ``limit`` it stops reading (413)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyLimitExceeded(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class RequestGuard:
    """The checks before a body is read (module docstring). ``authenticate`` verifies the
    token and tenant of every ``/api/`` request (OPTIONS aside: it carries no credentials);
    the limiters are per tenant, one for the ingest routes and one for the rest of the API."""

    def __init__(
        self,
        authenticate: Authenticate,
        *,
        max_body_bytes: int,
        api_limiter: RateLimiter | None = None,
        ingest_limiter: RateLimiter | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.max_body_bytes = max_body_bytes
        self.api_limiter = api_limiter
        self.ingest_limiter = ingest_limiter

    async def admit(
        self, app: Any, scope: Scope, headers: Mapping[bytes, bytes], *, ingest: bool = False
    ) -> None:
        if scope["path"].startswith("/api/") and scope["method"] != "OPTIONS":
            principal = await self.authenticate(app, headers)
            scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
            limiter = self.ingest_limiter if ingest else self.api_limiter
            if limiter is not None:
                limiter.admit(principal.tenant)
        if refuses_media_type(scope, headers):
            raise UnsupportedMediaType()

    async def admit_ingest(self, app: Any, scope: Scope, headers: Mapping[bytes, bytes]) -> None:
        """The guard of the raw ingest routes, whose handlers authenticate before they read
        the body (and :meth:`RawRequest.json_body` checks the media type): only a rate limit
        needs the principal this early, so without one this costs nothing on the hot path."""
        if self.ingest_limiter is not None:
            await self.admit(app, scope, headers, ingest=True)


def _exception_handler(app: Any, exc: Exception) -> Any:
    """The app's handler for ``exc`` (kit.http's mapping), as the routes' errors get."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, guard: RequestGuard | None = None) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = request_id_from(headers)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            try:
                app_receive = await self._admit(scope, receive, headers)
            except ClientDisconnected:
                return
            except Exception as exc:
                await self._refuse(scope, receive, send_with_context, exc, headers)
                return
            await self.app(scope, app_receive, send_with_context)
        finally:
            route = scope.get("route")
            record_request(scope["method"], getattr(route, "path", "unmatched"), status, started)
            request_id_var.reset(token)

    async def _admit(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]) -> Receive:
        """Run the guard, then read a body within the limit and hand it to the app whole."""
        if self.guard is None:
            return receive
        await self.guard.admit(scope.get("app"), scope, headers)
        if scope["method"] not in _BODY_METHODS or not has_body(headers):
            return receive
        limit = self.guard.max_body_bytes
        check_declared_size(headers, limit)
        body = await read_body(receive, limit)
        replayed = False

        async def receive_read_body() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # only http.disconnect is left to come
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return receive_read_body

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exc: Exception,
        headers: dict[bytes, bytes],
    ) -> None:
        handler = _exception_handler(scope.get("app"), exc)
        if handler is None:
            raise exc
        response = await handler(Request(scope, receive), exc)
        if has_body(headers):
            # The body was not read (or not to its end): do not read on what the client sends.
            response.headers["connection"] = "close"
        await response(scope, receive, send)
