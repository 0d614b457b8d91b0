"""The tenant context of a request: bearer token, X-TWC-Tenant and scope checks.

An endpoint declares the scope it needs with one of the aliases below (``principal:
EventsRead``) and gets the verified :class:`Principal` (its ``tenant`` scopes every query).
:class:`Authenticator` works both as a FastAPI dependency and as a plain call from the raw
ingest routes, which skip the dependency machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, Request

from event_collector.auth.service import Principal, TokenRejected, TokenService
from event_collector.kit.errors import BadRequest, Forbidden, Unauthorized
from event_collector.kit.middleware import PRINCIPAL_STATE_KEY

TENANT_HEADER = "x-twc-tenant"


def token_service(request: Request) -> TokenService:
    """The token service of the process's runtime (``app.state.runtime``)."""
    tokens: TokenService = request.app.state.runtime.tokens
    return tokens


Tokens = Annotated[TokenService, Depends(token_service)]


async def verify_request(
    tokens: TokenService, authorization: str | None, tenant: str | None
) -> Principal:
    """The principal of a bearer token valid for the request's X-TWC-Tenant (any scope)."""
    if not authorization:
        raise Unauthorized("an Authorization: Bearer <token> header is required")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    try:
        principal = await tokens.verify(token)
    except TokenRejected as exc:
        raise Unauthorized(str(exc)) from None
    if not tenant:
        raise BadRequest("the X-TWC-Tenant header is required")
    if tenant != principal.tenant:
        raise Forbidden("the token is not valid for this tenant")
    return principal


async def guard_principal(app: Any, headers: Mapping[bytes, bytes]) -> Principal:
    """The request guard's check (kit.middleware.RequestGuard), before any body is read."""
    authorization = headers.get(b"authorization")
    tenant = headers.get(TENANT_HEADER.encode())
    return await verify_request(
        app.state.runtime.tokens,
        None if authorization is None else authorization.decode("latin-1"),
        None if tenant is None else tenant.decode("latin-1"),
    )


class Authenticator:
    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Principal:
        # The request guard verified the token before the body was read; only the scope is left.
        principal: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
        if principal is None:
            return await self.authenticate(
                token_service(request),
                request.headers.get("authorization"),
                request.headers.get(TENANT_HEADER),
            )
        return self.require_scope(principal)

    async def authenticate(
        self, tokens: TokenService, authorization: str | None, tenant: str | None
    ) -> Principal:
        return self.require_scope(await verify_request(tokens, authorization, tenant))

    def require_scope(self, principal: Principal) -> Principal:
        if self.scope not in principal.scopes:
            raise Forbidden(f"the token lacks the {self.scope!r} scope")
        return principal


# The raw ingest routes call it directly (see events.endpoints).
authenticate_events_write = Authenticator("events:write")

EventsRead = Annotated[Principal, Depends(Authenticator("events:read"))]
SubscriptionsRead = Annotated[Principal, Depends(Authenticator("subscriptions:read"))]
SubscriptionsWrite = Annotated[Principal, Depends(Authenticator("subscriptions:write"))]
