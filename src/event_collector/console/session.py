"""Sign-in with the tenant's client credentials, sign-out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from event_collector.auth.service import OAuthError, TokenService
from event_collector.console.web import (
    COOKIE,
    COOKIE_PATH,
    Console,
    ConsoleRoute,
    Form,
    console_session,
    read_form,
    redirect,
    render,
)

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _safe_next(target: str) -> str:
    """Only a console path: never an open redirect to another site."""
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str = "/console") -> Response:
    return render(request, "sign_in.html", next=_safe_next(next))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    # Before sign-in there is no session to bind a CSRF token to; the credentials themselves
    # are what an attacker cannot forge, and the cookie set here is SameSite=Strict.
    fields = await read_form(request)
    client_id = (fields.get("client_id") or [""])[0].strip()
    client_secret = (fields.get("client_secret") or [""])[0]
    target = _safe_next((fields.get("next") or ["/console"])[0])
    tokens: TokenService = request.app.state.runtime.tokens
    try:
        if not client_id or not client_secret:
            raise OAuthError("invalid_client", "enter the client id and the client secret", 401)
        issued = await tokens.issue(client_id, client_secret, None)
    except OAuthError as exc:
        return render(
            request,
            "sign_in.html",
            401,
            next=target,
            client_id=client_id,
            error="Sign-in failed: the client id or secret is wrong, or the client is revoked."
            if exc.status_code == 401
            else exc.detail,
        )
    response = redirect(target)
    response.set_cookie(
        COOKIE,
        issued["access_token"],
        max_age=int(issued["expires_in"]),
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    console: Console = await console_session(request)
    await Form.of(console)
    response = redirect("/console/sign-in", "Signed out.")
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response
