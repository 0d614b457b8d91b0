"""The console's plumbing: the session cookie, CSRF, form parsing, rendering, errors as pages.

The session is the tenant's own bearer token (issued by ``TokenService`` from the client
credentials typed at sign-in) in an HttpOnly, SameSite=Strict cookie scoped to ``/console``;
each request verifies it exactly as the API verifies a bearer token, so a revoked client's
session ends as its API tokens do. Every form carries a CSRF token: an HMAC, under the server's
secret key (``SecretBox.mac``), of the session token. A cross-site page can neither read the
cookie nor compute the token, and every API process sharing the key directory accepts it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, quote, urlencode

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from starlette.responses import RedirectResponse, Response

from event_collector.auth.service import Principal, TokenRejected, TokenService
from event_collector.kit.crypto import SecretBox
from event_collector.kit.errors import (
    BadRequest,
    EventCollectorError,
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from event_collector.kit.http import pydantic_errors

COOKIE = "ec_console"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf"
_CSRF_PURPOSE = "console-csrf"
_MAX_FORM_BYTES = 65_536

M = TypeVar("M", bound=BaseModel)

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


class SignInRequired(Exception):
    """No valid session: the page answers with the sign-in form."""


@dataclass(frozen=True, slots=True)
class Console:
    """A signed-in operator: the principal the API would see, and the session's CSRF token."""

    request: Request
    principal: Principal
    csrf: str

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    def require(self, scope: str) -> None:
        """The API's scope rule: the same client may do the same things here."""
        if scope not in self.principal.scopes:
            raise Forbidden(f"this client lacks the {scope!r} scope")

    @property
    def runtime(self) -> Any:
        return self.request.app.state.runtime

    def render(self, template: str, status_code: int = 200, **context: Any) -> Response:
        return render(self.request, template, status_code, console=self, **context)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("console", None)
    context.setdefault("notice", request.query_params.get("notice"))
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    # Pages show tenant data: keep them out of shared caches and the back-forward cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-src 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    return response


def csrf_for(secrets: SecretBox, token: str) -> str:
    return secrets.mac(_CSRF_PURPOSE, token)


async def console_session(request: Request) -> Console:
    """FastAPI dependency: the signed-in operator, or :class:`SignInRequired`."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired
    runtime = request.app.state.runtime
    tokens: TokenService = runtime.tokens
    try:
        principal = await tokens.verify(token)
    except TokenRejected:
        raise SignInRequired from None
    return Console(request, principal, csrf_for(runtime.secrets, token))


# A page's signed-in operator (FastAPI dependency).
Session = Annotated[Console, Depends(console_session)]


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form (every value of every field); no multipart, nothing else."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("forms are posted as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise PayloadTooLarge("the form is too large")
    try:
        return parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise BadRequest("the form is not valid UTF-8") from None


class Form:
    """A posted form whose CSRF token has been checked."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    @classmethod
    async def of(cls, console: Console) -> Form:
        fields = await read_form(console.request)
        sent = (fields.get(CSRF_FIELD) or [""])[0]
        if not hmac.compare_digest(sent.encode(), console.csrf.encode()):
            raise Forbidden("the form's CSRF token is missing or invalid; reload the page")
        return cls(fields)

    def get(self, name: str, default: str = "") -> str:
        return (self.fields.get(name) or [default])[0].strip()

    def optional(self, name: str) -> str | None:
        return self.get(name) or None

    def all(self, name: str) -> list[str]:
        return [value for value in self.fields.get(name, []) if value]

    def checked(self, name: str) -> bool:
        return name in self.fields


def parse_body(model: type[M], body: dict[str, Any]) -> M:
    """The API's request model from a form's fields: the same validation, the same messages."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_errors(exc)) from None


def redirect(path: str, notice: str | None = None, **params: str) -> Response:
    """303 See Other (a POST's answer), with a one-line notice for the next page."""
    if notice:
        params["notice"] = notice
    query = f"?{urlencode(params)}" if params else ""
    return RedirectResponse(f"{path}{query}", status_code=303)


class ConsoleRoute(APIRoute):
    """Errors of console routes answer as HTML pages (the API's handler answers JSON)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path if request.method == "GET" else "/console"
                return redirect("/console/sign-in", next=target)
            except (RequestValidationError, ValidationError) as exc:
                problems = [_problem(problem) for problem in pydantic_errors(exc)]
                return await _error_page(request, 400, None, problems)
            except EventCollectorError as exc:
                problems = [_problem(problem) for problem in getattr(exc, "errors", [])]
                return await _error_page(request, exc.status_code, exc.detail, problems)

        return handle


def _problem(problem: dict[str, Any]) -> str:
    return f"{'.'.join(str(p) for p in problem.get('loc', ()))}: {problem.get('msg')}"


async def _error_page(
    request: Request, status: int, detail: str | None, problems: list[str]
) -> Response:
    """The error as a page, with the console's navigation when the session is valid."""
    try:
        console: Console | None = await console_session(request)
    except SignInRequired:
        console = None
    return render(
        request,
        "error.html",
        status,
        console=console,
        status=status,
        detail=detail,
        problems=problems,
    )


def quoted(value: str) -> str:
    """An id as a URL path segment."""
    return quote(value, safe="")


def human(value: Any) -> str:
    """A read-model value for a page: none as a dash, booleans as yes/no, mappings inline."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {human(v)}" for k, v in value.items())
    return str(value)


def when(value: Any) -> str:
    """An ISO-8601 instant (or datetime) to the second, for reading: 2026-01-02 03:04:05 UTC."""
    if value is None:
        return "\u2013"
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    day, _, rest = text.partition("T")
    if not rest:
        return text
    clock = rest[:8]
    zone = rest[8:].lstrip("0123456789.")
    return f"{day} {clock} {'UTC' if zone in ('Z', '+00:00') else zone}".rstrip()


templates.env.filters["q"] = quoted
templates.env.filters["when"] = when
templates.env.filters["human"] = human
