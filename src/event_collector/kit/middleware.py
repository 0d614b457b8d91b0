"""The one ASGI middleware: request id, metrics, and refusing non-JSON bodies early."""

from __future__ import annotations

import functools
import itertools
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from event_collector.kit.errors import UnsupportedMediaType
from event_collector.kit.http import dumps, error_body, is_json_content_type
from event_collector.kit.logging import request_id_var
from event_collector.kit.metrics import http_latency, http_requests

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
# Unique per process start and request, without a uuid4 (a syscall) per request.
_request_ids = itertools.count()
_request_id_prefix = secrets.token_hex(6)


def _new_request_id() -> str:
    return f"{_request_id_prefix}{next(_request_ids):010x}"


@functools.cache
def _metric_children(method: str, route: str, status: int) -> tuple[Any, Any]:
    return http_requests.labels(method, route, str(status)), http_latency.labels(route)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or _new_request_id()
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
            if self._refuse_media_type(scope, headers):
                error = UnsupportedMediaType()
                body = dumps(error_body(error))
                await send_with_context(
                    {
                        "type": "http.response.start",
                        "status": 415,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_context({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send_with_context)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            counter, latency = _metric_children(scope["method"], template, status)
            counter.inc()
            latency.observe(time.perf_counter() - started)
            request_id_var.reset(token)

    @staticmethod
    def _refuse_media_type(scope: Scope, headers: dict[bytes, bytes]) -> bool:
        """A body sent to the API that is not JSON gets 415 before anything parses it."""
        if scope["method"].encode() not in _BODY_METHODS or not scope["path"].startswith("/api/"):
            return False
        has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or (
            b"transfer-encoding" in headers
        )
        content_type = headers.get(b"content-type")
        return has_body and not is_json_content_type(
            content_type.decode("latin-1") if content_type else None
        )
