"""Raw routes: the hot endpoints, served before FastAPI's routing and middleware stack.

FastAPI's per-request machinery (its middleware stack, router, dependency resolution, Starlette
``Request``/``Response`` objects) costs more CPU than validating and storing an event. A
:class:`RawRoute` is an ``async (RawRequest) -> RawResponse`` handler that
:class:`EventCollectorApp` answers straight from the ASGI call: the headers are decoded once
into a dict, the response goes out as two ASGI messages, and the request context (request id,
the request guard: token before body, the ingest rate limit, media type; metrics, error bodies)
is the same as every other route's (:mod:`kit.middleware`, :func:`kit.http.error_body`). Its
OpenAPI operation is declared with it and merged into the generated document.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from event_collector.kit.errors import (
    BadRequest,
    EventCollectorError,
    UnsupportedMediaType,
)
from event_collector.kit.http import (
    INTERNAL_ERROR_BODY,
    as_service_error,
    dumps,
    error_body,
    log_server_error,
)
from event_collector.kit.logging import request_id_var
from event_collector.kit.middleware import (
    ClientDisconnected,
    RequestGuard,
    check_declared_size,
    has_body,
    read_body,
    record_request,
    refuses_media_type,
    request_id_from,
)

logger = logging.getLogger(__name__)


class RawRequest:
    """What a raw handler sees: the app, the ASGI scope and the request headers (lower-case
    names, as bytes)."""

    __slots__ = ("_receive", "app", "body_read", "headers", "scope")

    def __init__(
        self, app: FastAPI, scope: Scope, receive: Receive, headers: dict[bytes, bytes]
    ) -> None:
        self.app = app
        self.scope = scope
        self.headers = headers
        self._receive = receive
        self.body_read = not has_body(headers)

    @property
    def state(self) -> Any:
        return self.app.state

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def json_body(self, limit: int) -> bytes:
        """The raw body, refusing one that is not JSON (415: the handler has authenticated the
        request by now, so a token-less one got 401 first), oversized and empty bodies; a
        declared length over the limit is refused before reading."""
        if refuses_media_type(self.scope, self.headers):
            raise UnsupportedMediaType()
        check_declared_size(self.headers, limit)
        try:
            body = await read_body(self._receive, limit)
        except ClientDisconnected:
            raise BadRequest("the client disconnected before sending the whole body") from None
        self.body_read = True
        if not body.strip():
            raise BadRequest("the request body is empty; send a JSON document")
        return body


@dataclass(frozen=True, slots=True)
class RawResponse:
    body: bytes
    status: int = 200
    headers: Mapping[str, str] | None = None

    @classmethod
    def json(cls, content: Any, status: int = 200) -> RawResponse:
        return cls(dumps(content), status)


RawHandler = Callable[[RawRequest], Awaitable[RawResponse]]


@dataclass(frozen=True)
class RawRoute:
    method: str
    path: str
    handler: RawHandler
    openapi: dict[str, Any] = field(default_factory=dict)


class EventCollectorApp(FastAPI):
    """FastAPI, with :class:`RawRoute` s answered before its own stack."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_routes: dict[tuple[str, str], RawRoute] = {}
        self.request_guard: RequestGuard | None = None

    def add_raw_route(self, route: RawRoute) -> None:
        self.raw_routes[(route.method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.raw_routes.get((scope["method"], scope["path"]))
            if route is not None:
                await self._serve_raw(route, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve_raw(self, route: RawRoute, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        request_id = request_id_from(headers)
        context_token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            request = RawRequest(self, scope, receive, headers)
            response = await self._respond(route, request)
            status = response.status
            response_headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(response.body)),
                (b"x-request-id", request_id.encode()),
            ]
            if not request.body_read:
                # Refused before its body was read (to its end): read no more of it.
                response_headers.append((b"connection", b"close"))
            if response.headers:
                response_headers += [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in response.headers.items()
                ]
            await send(
                {"type": "http.response.start", "status": status, "headers": response_headers}
            )
            await send({"type": "http.response.body", "body": response.body})
        finally:
            record_request(scope["method"], route.path, status, started)
            request_id_var.reset(context_token)

    async def _respond(self, route: RawRoute, request: RawRequest) -> RawResponse:
        scope = request.scope
        try:
            if self.request_guard is not None:
                await self.request_guard.admit_ingest(self, scope, request.headers)
            return await route.handler(request)
        except Exception as exc:
            known = exc if isinstance(exc, EventCollectorError) else as_service_error(exc)
            if known is None:
                logger.exception("unhandled error on %s %s", scope["method"], route.path)
                return RawResponse(INTERNAL_ERROR_BODY, 500)
            log_server_error(scope["method"], route.path, known)
            return RawResponse(dumps(error_body(known)), known.status_code, known.headers)
