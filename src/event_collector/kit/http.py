"""HTTP plumbing: fast JSON responses, the one error handler."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from event_collector.kit.db.faults import is_unavailable
from event_collector.kit.errors import (
    DatabaseUnavailable,
    EventCollectorError,
    PayloadTooLarge,
    ValidationFailed,
)
from event_collector.kit.throttled_log import ThrottledLog
from event_collector.kit.validation import readable_problems

logger = logging.getLogger(__name__)

# During a database outage every request fails alike: a warning a second, not a line each.
_unavailable_log = ThrottledLog(logger, "request failed: %s %s: %s")

_HTTP_ERROR_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "RateLimited",
}


def dumps(content: Any) -> bytes:
    return to_json(content)


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(content), status_code, headers, media_type="application/json")


def is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def pydantic_errors(exc: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    """Validation problems as ``{"loc": [...], "msg": "..."}`` in plain words, without echoing
    input values (kit.validation)."""
    return readable_problems(exc.errors())


def raise_for_validation(exc: ValidationError) -> None:
    """Translate a pydantic error into 413 (a size limit) or 400 (anything else)."""
    problems = pydantic_errors(exc)
    too_large = [p for p in problems if p["type"] == "payload_too_large"]
    if too_large:
        where = ".".join(str(part) for part in too_large[0]["loc"])
        raise PayloadTooLarge(f"{where}: {too_large[0]['msg']}")
    raise ValidationFailed(problems)


def error_body(exc: EventCollectorError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": type(exc).__name__, "detail": exc.detail}
    if isinstance(exc, ValidationFailed):
        body["errors"] = exc.errors
    return body


def log_server_error(method: str, path: str, exc: EventCollectorError) -> None:
    """Log an error answered 5xx: at ERROR, but a database outage (which the operator sees on
    /readyz and in the workers' own warnings) at WARNING and throttled."""
    if isinstance(exc, DatabaseUnavailable):
        _unavailable_log.record(method, path, exc.detail)
    elif exc.status_code >= 500:
        logger.error("request failed: %s %s: %s", method, path, exc.detail)


async def handle_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EventCollectorError)
    log_server_error(request.method, request.url.path, exc)
    return json_response(error_body(exc), exc.status_code, exc.headers)


async def handle_request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = pydantic_errors(exc)
    if any(p["type"] == "json_invalid" for p in problems):
        failure = ValidationFailed(problems, "the request body is not valid JSON")
    else:
        failure = ValidationFailed(problems)
    return json_response(error_body(failure), 400)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    name = _HTTP_ERROR_NAMES.get(exc.status_code, "HTTPError")
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.url.path}"
    elif exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    return json_response(
        {"error": name, "detail": detail}, exc.status_code, getattr(exc, "headers", None)
    )


INTERNAL_ERROR_BODY = dumps(
    {"error": "InternalError", "detail": "an unexpected error occurred; it has been logged"}
)


def as_service_error(exc: Exception) -> EventCollectorError | None:
    """The service error an exception that escaped the transaction wrappers stands for, if it
    is one we know (a database fault met outside a transaction: 503, never 500)."""
    return DatabaseUnavailable() if is_unavailable(exc) else None


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    known = as_service_error(exc)
    if known is not None:
        return await handle_app_error(request, known)
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response(INTERNAL_ERROR_BODY, 500, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EventCollectorError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the error codes a route can answer with."""
    descriptions = {
        400: "Invalid request (malformed JSON, failed validation, missing X-TWC-Tenant)",
        401: "Missing, invalid or expired bearer token",
        403: "Token not valid for this tenant, or missing scope",
        404: "Unknown id (also for another tenant's ids)",
        409: "Same id, different content",
        413: "Body or decoded payload too large",
        415: "Body is not JSON",
    }
    return {code: {"description": descriptions[code], "model": ErrorBody} for code in codes}


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    error: str
    detail: str
    errors: list[ErrorItem] | None = None
