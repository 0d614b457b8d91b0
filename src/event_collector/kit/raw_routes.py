"""Raw routes: the hot endpoints, served before FastAPI's routing and middleware stack.

FastAPI's per-request machinery (its middleware stack, router, dependency resolution and body
handling) costs more CPU than validating and storing an event. A :class:`RawRoute` is a plain
``async (Request) -> Response`` handler that :class:`EventCollectorApp` dispatches straight from
the ASGI call, wrapped only in our own :class:`RequestContextMiddleware` (request id, metrics,
media-type check) and rendered through the same error handlers as every other route. Its
OpenAPI operation is declared with it and merged into the generated document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from event_collector.kit.errors import EventCollectorError
from event_collector.kit.http import handle_app_error, handle_unexpected
from event_collector.kit.middleware import RequestContextMiddleware

RawHandler = Callable[[Request], Awaitable[Response]]


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
        self._raw_stack = RequestContextMiddleware(self._serve_raw)

    def add_raw_route(self, route: RawRoute) -> None:
        self.raw_routes[(route.method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in self.raw_routes:
            scope["app"] = self
            await self._raw_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _serve_raw(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.raw_routes[(scope["method"], scope["path"])]
        scope["route"] = route
        request = Request(scope, receive)
        try:
            response = await route.handler(request)
        except EventCollectorError as exc:
            response = await handle_app_error(request, exc)
        except Exception as exc:
            response = await handle_unexpected(request, exc)
        await response(scope, receive, send)
