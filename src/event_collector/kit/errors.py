"""One error hierarchy for the whole service, mapped to HTTP in one handler (kit.http)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class EventCollectorError(Exception):
    """Something went wrong inside Event Collector."""

    status_code = 500

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = detail or (self.__doc__ or type(self).__name__).strip()
        self.headers = dict(headers or {})
        super().__init__(self.detail)


class ConfigurationError(EventCollectorError):
    """The configuration is invalid."""


class BadRequest(EventCollectorError):
    """The request is invalid."""

    status_code = 400


class ValidationFailed(BadRequest):
    """The request body failed validation."""

    def __init__(self, errors: Sequence[Mapping[str, Any]], detail: str | None = None) -> None:
        self.errors = [dict(e) for e in errors]
        if detail is None:
            first = self.errors[0] if self.errors else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            detail = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg")
            if len(self.errors) > 1:
                detail = f"{detail} (and {len(self.errors) - 1} more problem(s))"
        super().__init__(detail)


class Unauthorized(EventCollectorError):
    """A valid bearer token is required."""

    status_code = 401

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="event-collector"'})


class Forbidden(EventCollectorError):
    """The token is not valid for this tenant or lacks the required scope."""

    status_code = 403


class NotFound(EventCollectorError):
    """The resource does not exist."""

    status_code = 404


class Conflict(EventCollectorError):
    """The request conflicts with the stored state."""

    status_code = 409


class PayloadTooLarge(EventCollectorError):
    """The request body is too large."""

    status_code = 413


class UnsupportedMediaType(EventCollectorError):
    """The request body must be JSON (Content-Type: application/json)."""

    status_code = 415


class RateLimited(EventCollectorError):
    """Too many requests."""

    status_code = 429


class ServiceUnavailable(EventCollectorError):
    """The service cannot handle the request right now."""

    status_code = 503


class DatabaseUnavailable(ServiceUnavailable):
    """The database is unreachable or not answering; nothing was stored, retry shortly."""

    RETRY_AFTER_SECONDS = 2

    def __init__(self, *, stale_connection: bool = False) -> None:
        # Not for clients: the failure came from a connection that had served before (perhaps
        # one the server dropped), so a unit of work that can be repeated may try once more.
        self.stale_connection = stale_connection
        # The detail is fixed: a driver's message names hosts, ports and internals.
        super().__init__(
            "the database is unavailable; nothing was changed, retry shortly",
            headers={"Retry-After": str(self.RETRY_AFTER_SECONDS)},
        )
