"""Tenant and client administration, token issuance and token verification."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.auth.keys import SigningKey
from event_collector.auth.repository import ClientRepository, TenantRepository
from event_collector.auth.scopes import ALL_SCOPES, parse_scopes
from event_collector.kit.db import Database, utcnow
from event_collector.kit.errors import BadRequest, Conflict, EventCollectorError, NotFound
from event_collector.kit.settings import Settings, TrustedIssuer

TENANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_REALM_IN_ISSUER = re.compile(r"/realms/([^/]+)/?$")


class OAuthError(EventCollectorError):
    """An OAuth 2.0 token request error (RFC 6749 §5.2), rendered in the RFC's shape."""

    def __init__(self, error: str, description: str, status_code: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.status_code = status_code


class TokenRejected(Exception):
    """The bearer token is not acceptable; the message says why (never echoing the token)."""


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    subject: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class IssuedClient:
    tenant: str
    client_id: str
    client_secret: str
    scopes: list[str]


def hash_secret(secret: str) -> str:
    # Client secrets are 256-bit random values, so a fast hash is as strong as a slow one.
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def _secret_matches(secret: str, stored: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored)


def validate_tenant_id(tenant_id: str) -> str:
    if not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise BadRequest(
            "tenant ids are 1-128 characters: letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return tenant_id


async def create_tenant(conn: AsyncConnection, tenant_id: str) -> None:
    repository = TenantRepository.from_connection(conn)
    validate_tenant_id(tenant_id)
    if await repository.exists(tenant_id):
        raise Conflict(f"tenant {tenant_id!r} already exists")
    await repository.create(tenant_id, utcnow())


async def delete_tenant(conn: AsyncConnection, tenant_id: str) -> None:
    if not await TenantRepository.from_connection(conn).delete(tenant_id):
        raise NotFound(f"tenant {tenant_id!r} does not exist")


async def list_tenants(conn: AsyncConnection) -> list[dict[str, Any]]:
    return await TenantRepository.from_connection(conn).list()


async def create_client(
    conn: AsyncConnection, tenant_id: str, *, name: str = "default", scopes: list[str] | None = None
) -> IssuedClient:
    if not await TenantRepository.from_connection(conn).exists(tenant_id):
        raise NotFound(f"tenant {tenant_id!r} does not exist")
    granted = scopes or list(ALL_SCOPES)
    unknown = sorted(set(granted) - set(ALL_SCOPES))
    if unknown:
        raise BadRequest(f"unknown scope(s) {', '.join(unknown)}; known: {' '.join(ALL_SCOPES)}")
    client_id = f"{tenant_id}-{secrets.token_hex(6)}"
    client_secret = secrets.token_urlsafe(32)
    await ClientRepository.from_connection(conn).create(
        client_id=client_id,
        tenant_id=tenant_id,
        name=name,
        secret_hash=hash_secret(client_secret),
        scopes=" ".join(granted),
        created_at=utcnow(),
    )
    return IssuedClient(tenant_id, client_id, client_secret, granted)


async def list_clients(conn: AsyncConnection, tenant_id: str | None) -> list[dict[str, Any]]:
    return await ClientRepository.from_connection(conn).list(tenant_id)


async def revoke_client(conn: AsyncConnection, client_id: str) -> None:
    if not await ClientRepository.from_connection(conn).revoke(client_id, utcnow()):
        raise NotFound(f"client {client_id!r} does not exist or is already revoked")


class TokenService:
    """Issues our JWTs and verifies bearer tokens (ours and trusted issuers'), with a cache.

    Verifying a token costs a signature check and a database read (is the client still
    active?), so verified tokens are cached for ``token_cache_seconds``: a revoked client's
    tokens stop working within that time (clients are revoked by the CLI, another process).
    """

    def __init__(self, db: Database, settings: Settings, keys: list[SigningKey]) -> None:
        self._db = db
        self._settings = settings
        self._keys = keys
        self._public_keys = {key.kid: key.private_key.public_key() for key in keys}
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._cache_size = 10_000
        self._trusted = {issuer.issuer: issuer for issuer in settings.trusted_issuers}
        self._jwk_clients: dict[str, jwt.PyJWKClient] = {}

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk for key in self._keys]}

    async def issue(
        self,
        client_id: str,
        client_secret: str,
        requested_scope: str | None,
        realm: str | None = None,
    ) -> dict[str, Any]:
        async with self._db.read() as conn:
            client = await ClientRepository.from_connection(conn).get(client_id)
        if (
            client is None
            or client["revoked_at"] is not None
            or not _secret_matches(client_secret, client["secret_hash"])
            or (realm is not None and client["tenant_id"] != realm)
        ):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        allowed = parse_scopes(client["scopes"])
        requested = parse_scopes(requested_scope)
        if requested and not set(requested) <= set(allowed):
            extra = " ".join(sorted(set(requested) - set(allowed)))
            raise OAuthError("invalid_scope", f"scope(s) not granted to this client: {extra}")
        scopes = requested or allowed
        now = int(time.time())
        lifetime = int(self._settings.token_lifetime.total_seconds())
        claims = {
            "iss": self._settings.token_issuer,
            "sub": client_id,
            "tenantid": client["tenant_id"],
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        signer = self._keys[0]
        token = jwt.encode(
            claims, signer.private_key, algorithm="RS256", headers={"kid": signer.kid}
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(scopes),
        }

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        principal, exp = await self._verify_uncached(token)
        ttl = min(self._settings.token_cache_seconds, exp - time.time())
        if ttl > 0:
            self._cache[token] = (now + ttl, principal)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    async def _verify_uncached(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRejected("the bearer token is not a well-formed JWT") from None
        issuer = unverified.get("iss")
        if issuer == self._settings.token_issuer:
            return await self._verify_own(token, header)
        trusted = self._trusted.get(str(issuer))
        if trusted is None:
            raise TokenRejected("the token's issuer is not trusted by this server")
        return await self._verify_external(token, trusted)

    async def _verify_own(self, token: str, header: dict[str, Any]) -> tuple[Principal, float]:
        key = self._public_keys.get(str(header.get("kid")))
        if key is None:
            raise TokenRejected("the token was signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                issuer=self._settings.token_issuer,
                options={"require": ["exp", "sub", "tenantid"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the token is invalid: {exc}") from None
        client = await self._db.read_again_if_stale(
            lambda conn: ClientRepository.from_connection(conn).get(claims["sub"])
        )
        if client is None or client["revoked_at"] is not None:
            raise TokenRejected("the token's client has been revoked")
        principal = Principal(
            tenant=claims["tenantid"],
            subject=claims["sub"],
            scopes=frozenset(parse_scopes(claims.get("scope"))),
        )
        return principal, float(claims["exp"])

    async def _verify_external(self, token: str, trusted: TrustedIssuer) -> tuple[Principal, float]:
        jwk_client = self._jwk_clients.get(trusted.issuer)
        if jwk_client is None:
            jwk_client = jwt.PyJWKClient(trusted.jwks_url, cache_keys=True, lifespan=300, timeout=5)
            self._jwk_clients[trusted.issuer] = jwk_client
        try:
            # PyJWKClient fetches with blocking urllib: keep it off the event loop.
            signing_key = await asyncio.to_thread(jwk_client.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"],
                issuer=trusted.issuer,
                audience=trusted.audience,
                options={"require": ["exp"], "verify_aud": trusted.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except jwt.PyJWKClientError as exc:
            raise TokenRejected(f"the issuer's signing keys could not be used: {exc}") from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the token is invalid: {exc}") from None
        tenant = claims.get("tenantid")
        if not tenant:
            match = _REALM_IN_ISSUER.search(trusted.issuer)
            tenant = match.group(1) if match else None
        if not tenant:
            raise TokenRejected("the token names no tenant (no tenantid claim, no realm in iss)")
        async with self._db.read() as conn:
            known = await TenantRepository.from_connection(conn).exists(str(tenant))
        if not known:
            raise TokenRejected(f"tenant {tenant!r} is not registered on this server")
        ours = set(parse_scopes(claims.get("scope"))) & set(ALL_SCOPES)
        principal = Principal(
            tenant=str(tenant),
            subject=str(claims.get("sub") or claims.get("azp") or "external"),
            # A token that carries none of our scopes (a plain Keycloak token) may do
            # everything for its tenant, as on the platform ("Tenant authentication").
            scopes=frozenset(ours or ALL_SCOPES),
        )
        return principal, float(claims["exp"])
