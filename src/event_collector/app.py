"""The application factory: runs the runtime (runtime.py) in the lifespan, wires the routers."""

from __future__ import annotations

import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from event_collector.auth import endpoints as auth_endpoints
from event_collector.auth.dependencies import guard_principal
from event_collector.console import endpoints as console_endpoints
from event_collector.delivery import endpoints as delivery_endpoints
from event_collector.events import endpoints as event_endpoints
from event_collector.jobs import endpoints as job_endpoints
from event_collector.kit.http import ErrorBody, install_error_handlers
from event_collector.kit.logging import access_log
from event_collector.kit.middleware import RequestContextMiddleware, RequestGuard
from event_collector.kit.nul import refuse_nul_in_url
from event_collector.kit.ratelimit import rate_limiter
from event_collector.kit.raw_routes import EventCollectorApp
from event_collector.kit.settings import Settings, load_settings
from event_collector.notifications import endpoints as notification_endpoints
from event_collector.ops import endpoints as ops_endpoints
from event_collector.ops.docs import install_docs
from event_collector.read_model import endpoints as read_model_endpoints
from event_collector.runtime import Runtime
from event_collector.subscriptions import endpoints as subscription_endpoints

DESCRIPTION = """
Collects commerce entity events over REST, stores them durably, and forwards them at least once
to each tenant's subscriptions.

Every `/api/v1` request needs `Authorization: Bearer <token>` (from `POST /oauth/token`) and
`X-TWC-Tenant: <tenant>`. Errors have the body
`{"error": "<ErrorClass>", "detail": "<sentence>", "errors": [...]}` (`errors` for validation).
"""


def create_app(settings: Settings | None = None) -> EventCollectorApp:
    settings = settings or load_settings()
    access_log.enabled = settings.access_log

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(
            settings,
            api=True,
            dispatcher=settings.dispatcher_enabled,
            scheduler=settings.scheduler_enabled,
        )
        app.state.runtime = runtime
        try:
            await runtime.start()
            # What start-up built (modules, models, the engine, compiled schemas, AWS service
            # models) lives as long as the process: take it out of the cyclic garbage
            # collector's scans. Ingest allocates many short-lived objects per event, and every
            # full collection walked those hundreds of thousands of permanent ones too: ~80 ms
            # pauses about once a second under single-event load (the p99), over a quarter of a
            # batch's CPU per event.
            gc.collect()
            gc.freeze()
            yield
        finally:
            await runtime.stop()

    app = EventCollectorApp(
        title="Event Collector",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # served with local assets by ops.docs
        redoc_url=None,
        dependencies=[Depends(refuse_nul_in_url)],  # before authentication and parameters
    )
    app.request_guard = RequestGuard(
        guard_principal,
        max_body_bytes=settings.max_body_bytes,
        api_limiter=rate_limiter(
            settings.rate_limit_api_per_second, settings.rate_limit_api_burst, "on the API"
        ),
        ingest_limiter=rate_limiter(
            settings.rate_limit_ingest_per_second, settings.rate_limit_ingest_burst, "to ingest"
        ),
    )
    app.add_middleware(RequestContextMiddleware, guard=app.request_guard)
    install_error_handlers(app)
    app.include_router(ops_endpoints.router)
    install_docs(app)
    app.include_router(auth_endpoints.router)
    app.include_router(event_endpoints.router)
    app.include_router(subscription_endpoints.router)
    app.include_router(delivery_endpoints.router)
    app.include_router(delivery_endpoints.tenant_router)
    app.include_router(read_model_endpoints.router)
    app.include_router(job_endpoints.router)
    app.include_router(notification_endpoints.router)
    console_endpoints.install(app)
    for route in event_endpoints.RAW_ROUTES:
        app.add_raw_route(route)
    _install_allow(app)  # keep after every route and mount: it answers what they do not
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
_ANY_PATH = "/{path:path}"


def _allowed_methods(app: EventCollectorApp, scope: Scope) -> set[str]:
    """The methods served at the request's path: the OpenAPI document's (a concrete path before
    the templated ones, as OpenAPI matches them: `/api/v1/events/batch` is the batch, not an
    event id), else whatever an undocumented route (the docs pages) answers, asked of the
    routes themselves."""
    path = scope["path"]
    documented: dict[str, dict[str, Any]] = app.openapi()["paths"]
    operations = [documented[path]] if path in documented else []
    if not operations:
        operations = [
            ops
            for template, ops in documented.items()
            if "{" in template and re.fullmatch(_template_regex(template), path)
        ]
    methods = {method.upper() for ops in operations for method in ops}
    if methods:
        return methods
    routes = [r for r in app.router.routes if getattr(r, "path", None) != _ANY_PATH]
    for method in _ALL_METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            methods.add(method)
    return methods


def _template_regex(template: str) -> str:
    return "".join(
        "[^/]+" if part.startswith("{") else re.escape(part)
        for part in re.split(r"({\w+})", template)
    )


def _install_allow(app: EventCollectorApp) -> None:
    """OPTIONS on any route answers 204 with ``Allow``; a method a path does not serve answers
    405 with ``Allow`` listing what it does serve (RFC 9110 §15.5.6), the same set whichever
    route matched first (a path served by both a FastAPI route and a raw route lists both)."""

    async def allow(request: Request) -> Response:
        methods = _allowed_methods(app, request.scope) - {"OPTIONS"}
        if not methods:
            raise StarletteHTTPException(404)
        allow_header = ", ".join(sorted(methods | {"OPTIONS"}))
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow_header})
        raise StarletteHTTPException(405, headers={"Allow": allow_header})

    # Matched only when no route matched fully: an unknown path (404) or an unserved method.
    app.router.routes.append(Route(_ANY_PATH, allow, methods=_ALL_METHODS))


def _openapi(app: EventCollectorApp) -> dict[str, Any]:
    """The generated schema, plus what hand-parsed routes and header auth cannot declare."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for route in app.raw_routes.values():
        schema["paths"].setdefault(route.path, {})[route.method.lower()] = route.openapi
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (*event_endpoints.OPENAPI_MODELS, ErrorBody):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(model_schema.pop("$defs", {}))
        schemas[model.__name__] = model_schema
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    tenant_header = {
        "name": "X-TWC-Tenant",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "The tenant the token was issued for",
    }
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            # Validation errors are answered 400 (kit.http), never FastAPI's 422.
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "Invalid request",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    },
                }
            if not path.startswith("/api/"):
                continue
            operation["security"] = [{"bearerAuth": []}]
            parameters = operation.setdefault("parameters", [])
            if not any(p.get("name") == "X-TWC-Tenant" for p in parameters):
                parameters.append(tenant_header)
    _add_links(schema)
    app.openapi_schema = schema
    return schema


# Operations whose answer names a resource, and which path parameters it supplies: the OpenAPI
# links that let a client (and a stateful test) go from a create to everything about that
# resource. (method, path, status) → {path parameter: runtime expression}.
_LINK_SOURCES: dict[tuple[str, str, str], dict[str, str]] = {
    ("post", "/api/v1/event-subscription", "201"): {"subscription_id": "$response.body#/id"},
    ("put", "/api/v1/event-subscription", "200"): {"subscription_id": "$response.body#/id"},
    ("post", "/api/v1/events", "201"): {"event_id": "$response.body#/id"},
    ("post", "/api/v1/jobs", "201"): {"job_id": "$response.body#/id"},
    ("post", "/api/v1/jobs/{job_id}/run", "202"): {
        "job_id": "$request.path.job_id",
        "run_id": "$response.body#/run_id",
    },
}


def _add_links(schema: dict[str, Any]) -> None:
    """Link each source to every operation whose path parameters it supplies."""
    paths: dict[str, dict[str, Any]] = schema["paths"]
    for (method, source_path, status), supplies in _LINK_SOURCES.items():
        response = paths[source_path][method]["responses"][status]
        links = response.setdefault("links", {})
        for path, operations in paths.items():
            needed = set(re.findall(r"{(\w+)}", path))
            if not needed or not needed <= supplies.keys() or path == source_path:
                continue
            for operation in operations.values():
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {name: supplies[name] for name in sorted(needed)},
                }
