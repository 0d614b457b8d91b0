"""OAuth 2.0 client-credentials token endpoints and the JWKS."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request
from starlette.responses import Response

from event_collector.auth.dependencies import Tokens
from event_collector.auth.service import OAuthError, TokenService
from event_collector.kit.http import json_response
from event_collector.kit.nul import NUL

router = APIRouter(tags=["auth"])

_TOKEN_PARAMETERS = ("grant_type", "client_id", "client_secret", "scope")

_TOKEN_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "scope": {"type": "string", "description": "space-separated scopes"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "An access token",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string"},
                            "expires_in": {"type": "integer"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            },
        },
        "400": {"description": "invalid_request / unsupported_grant_type / invalid_scope"},
        "401": {"description": "invalid_client"},
    },
}


async def _token(request: Request, tokens: TokenService, realm: str | None) -> Response:
    try:
        form = await _read_form(request)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type", "only grant_type=client_credentials is supported"
            )
        client_id, client_secret = _client_credentials(request, form)
        token = await tokens.issue(client_id, client_secret, form.get("scope"), realm=realm)
    except OAuthError as exc:
        headers = {"WWW-Authenticate": "Basic"} if exc.status_code == 401 else None
        return json_response(
            {"error": exc.error, "error_description": exc.detail},
            exc.status_code,
            headers,
        )
    return json_response(token, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def _read_form(request: Request) -> dict[str, str]:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request", "send the token request as application/x-www-form-urlencoded"
        )
    body = await request.body()
    if len(body) > 16_384:
        raise OAuthError("invalid_request", "the token request is too large")
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the form is not valid UTF-8") from None
    # RFC 6749 §3.2: a parameter must not be sent twice, and unrecognized ones are ignored
    # (so are their repetitions).
    duplicated = [name for name in _TOKEN_PARAMETERS if len(parsed.get(name, ())) > 1]
    if duplicated:
        raise OAuthError("invalid_request", f"parameter {duplicated[0]!r} is repeated")
    form = {name: parsed[name][0] for name in _TOKEN_PARAMETERS if name in parsed}
    if any(NUL in value for value in form.values()):
        raise OAuthError("invalid_request", "the form must not contain a NUL character (%00)")
    return form


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from HTTP Basic (RFC 6749 §2.3.1) or the form body."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            client_id, _, client_secret = (unquote(part) for part in decoded.partition(":"))
            if NUL in client_id or NUL in client_secret:
                raise ValueError("NUL in the credentials")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
        return client_id, client_secret
    form_id, form_secret = form.get("client_id"), form.get("client_secret")
    if not form_id or not form_secret:
        raise OAuthError("invalid_client", "client_id and client_secret are required", 401)
    return form_id, form_secret


@router.post("/oauth/token", openapi_extra=_TOKEN_DOC, summary="Get an access token")
async def token(request: Request, tokens: Tokens) -> Response:
    return await _token(request, tokens, realm=None)


@router.post(
    "/auth/realms/{tenant}/protocol/openid-connect/token",
    openapi_extra=_TOKEN_DOC,
    summary="Get an access token (Keycloak-shaped path; the realm is the tenant)",
)
async def realm_token(tenant: str, request: Request, tokens: Tokens) -> Response:
    return await _token(request, tokens, realm=tenant)


@router.get("/.well-known/jwks.json", summary="Public keys that verify our tokens")
async def jwks(tokens: Tokens) -> dict[str, Any]:
    return tokens.jwks
