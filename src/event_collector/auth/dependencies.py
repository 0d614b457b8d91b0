"""The tenant context of a request: bearer token, X-TWC-Tenant and scope checks.

An endpoint declares the scope it needs with one of the aliases below (``principal:
EventsRead``) and gets the verified :class:`Principal` (its ``tenant`` scopes every query).
:class:`Authenticator` works both as a FastAPI dependency and as a plain call from the raw
ingest routes, which skip the dependency machinery.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from event_collector.auth.service import Principal, TokenRejected, TokenService
from event_collector.kit.errors import BadRequest, Forbidden, Unauthorized

TENANT_HEADER = "x-twc-tenant"


def token_service(request: Request) -> TokenService:
    """The token service of the process's runtime (``app.state.runtime``)."""
    tokens: TokenService = request.app.state.runtime.tokens
    return tokens


Tokens = Annotated[TokenService, Depends(token_service)]


class Authenticator:
    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Principal:
        return await self.authenticate(
            token_service(request),
            request.headers.get("authorization"),
            request.headers.get(TENANT_HEADER),
        )

    async def authenticate(
        self, tokens: TokenService, authorization: str | None, tenant: str | None
    ) -> Principal:
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
        if self.scope not in principal.scopes:
            raise Forbidden(f"the token lacks the {self.scope!r} scope")
        return principal


# The raw ingest routes call it directly (see events.endpoints).
authenticate_events_write = Authenticator("events:write")

EventsRead = Annotated[Principal, Depends(Authenticator("events:read"))]
SubscriptionsRead = Annotated[Principal, Depends(Authenticator("subscriptions:read"))]
SubscriptionsWrite = Annotated[Principal, Depends(Authenticator("subscriptions:write"))]
