"""The request context every route gets: a request id, request metrics, and refusing non-JSON
bodies early. :class:`RequestContextMiddleware` applies it to FastAPI's routes; the raw routes
(:mod:`kit.raw_routes`) call the same functions directly."""

from __future__ import annotations

import functools
import itertools
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from event_collector.kit.errors import UnsupportedMediaType
from event_collector.kit.http import dumps, error_body, is_json_content_type
from event_collector.kit.logging import access_log, request_id_var
from event_collector.kit.metrics import request_metrics

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Unique per process start and request, without a uuid4 (a syscall) per request.
_request_ids = itertools.count()
_request_id_prefix = secrets.token_hex(6)


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


def refuses_media_type(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """A body sent to the API that is not JSON gets 415 before anything parses it."""
    if scope["method"] not in _BODY_METHODS or not scope["path"].startswith("/api/"):
        return False
    has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or (
        b"transfer-encoding" in headers
    )
    content_type = headers.get(b"content-type")
    return has_body and not (content_type and _is_json_media_type(content_type))


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            if refuses_media_type(scope, headers):
                body = dumps(error_body(UnsupportedMediaType()))
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
            record_request(scope["method"], getattr(route, "path", "unmatched"), status, started)
            request_id_var.reset(token)
