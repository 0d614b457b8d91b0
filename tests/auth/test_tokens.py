"""Token issuance and every authentication failure mode of DESIGN §4."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from event_collector.app import create_app
from event_collector.auth import service as auth_service
from event_collector.auth.keys import load_signing_keys
from event_collector.kit.settings import TrustedIssuer
from tests.conftest import TenantFixture, make_settings, make_tenant
from tests.factories import event_body


def token_form(tenant: TenantFixture, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
        **extra,
    }


async def test_token_response_shape_and_claims(client, tenant, key_dir: Path) -> None:
    response = await client.post("/oauth/token", data=token_form(tenant))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert set(body["scope"].split()) >= {"events:read", "events:write"}
    assert response.headers["cache-control"] == "no-store"
    jwks = (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(body["access_token"])
    jwk = next(key for key in jwks["keys"] if key["kid"] == header["kid"])
    claims = jwt.decode(
        body["access_token"], RSAAlgorithm.from_jwk(json.dumps(jwk)), algorithms=["RS256"]
    )
    assert claims["tenantid"] == tenant.name
    assert claims["sub"] == tenant.client_id
    assert claims["exp"] - claims["iat"] == 3600


async def test_keycloak_shaped_path_and_basic_auth(client, tenant, other_tenant) -> None:
    path = f"/auth/realms/{tenant.name}/protocol/openid-connect/token"
    assert (await client.post(path, data=token_form(tenant))).status_code == 200
    basic = base64.b64encode(f"{tenant.client_id}:{tenant.client_secret}".encode()).decode()
    response = await client.post(
        path,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200
    # A client of another realm (tenant) is not accepted there.
    wrong_realm = f"/auth/realms/{other_tenant.name}/protocol/openid-connect/token"
    response = await client.post(wrong_realm, data=token_form(tenant))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "nobody"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"scope": "events:read admin:everything"}, 400, "invalid_scope"),
    ],
)
async def test_token_request_errors(client, tenant, form, status, error) -> None:
    response = await client.post("/oauth/token", data={**token_form(tenant), **form})
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]


async def test_token_request_must_be_a_form(client, tenant) -> None:
    response = await client.post("/oauth/token", json=token_form(tenant))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_requested_scope_narrows_the_token(client, tenant) -> None:
    response = await client.post("/oauth/token", data=token_form(tenant, scope="events:read"))
    token = response.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-TWC-Tenant": tenant.name}
    assert (await client.get("/api/v1/events", headers=headers)).status_code == 200
    denied = await client.post("/api/v1/events", json=event_body(), headers=headers)
    assert denied.status_code == 403
    assert "events:write" in denied.json()["detail"]


async def test_client_created_with_limited_scopes(client, context) -> None:
    reader = await make_tenant(context, client, scopes=["events:read"])
    assert (
        await client.post("/api/v1/events", json=event_body(), headers=reader.headers)
    ).status_code == 403


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
    ],
)
async def test_missing_or_malformed_token_is_401(client, tenant, headers, status) -> None:
    response = await client.get("/api/v1/events", headers={"X-TWC-Tenant": tenant.name, **headers})
    assert response.status_code == status
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "Unauthorized"


async def test_tenant_header_rules(client, tenant, other_tenant) -> None:
    auth = {"Authorization": tenant.headers["Authorization"]}
    missing = await client.get("/api/v1/events", headers=auth)
    assert missing.status_code == 400
    assert "X-TWC-Tenant" in missing.json()["detail"]
    mismatch = await client.get(
        "/api/v1/events", headers={**auth, "X-TWC-Tenant": other_tenant.name}
    )
    assert mismatch.status_code == 403


async def test_expired_and_foreign_tokens_are_401(client, tenant, key_dir: Path) -> None:
    signer = load_signing_keys(key_dir)[0]
    now = int(time.time())
    claims = {
        "iss": "event-collector",
        "sub": tenant.client_id,
        "tenantid": tenant.name,
        "scope": "events:read",
        "iat": now - 7200,
        "exp": now - 3600,
    }
    expired = jwt.encode(claims, signer.private_key, algorithm="RS256", headers={"kid": signer.kid})
    response = await client.get(
        "/api/v1/events",
        headers={"Authorization": f"Bearer {expired}", "X-TWC-Tenant": tenant.name},
    )
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {**claims, "exp": now + 600}, stranger, algorithm="RS256", headers={"kid": signer.kid}
    )
    response = await client.get(
        "/api/v1/events", headers={"Authorization": f"Bearer {forged}", "X-TWC-Tenant": tenant.name}
    )
    assert response.status_code == 401

    untrusted = jwt.encode(
        {**claims, "iss": "https://elsewhere", "exp": now + 600}, stranger, algorithm="RS256"
    )
    response = await client.get(
        "/api/v1/events",
        headers={"Authorization": f"Bearer {untrusted}", "X-TWC-Tenant": tenant.name},
    )
    assert response.status_code == 401
    assert "issuer" in response.json()["detail"]


async def test_revoked_client_gets_no_token_and_its_tokens_stop_working(
    client, context, tenant
) -> None:
    assert (await client.get("/api/v1/events", headers=tenant.headers)).status_code == 200
    async with context.db.write() as conn:
        await auth_service.revoke_client(conn, tenant.client_id)
    assert (await client.get("/api/v1/events", headers=tenant.headers)).status_code == 401
    response = await client.post("/oauth/token", data=token_form(tenant))
    assert response.status_code == 401


# --- external issuers (e.g. Keycloak), their JWKS served by a real HTTP server -----------------


class _JWKSServer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="ext-1", use="sig", alg="RS256")
        document = json.dumps({"keys": [jwk]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, claims: dict[str, object]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "ext-1"})


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[_JWKSServer]:
    server = _JWKSServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest_asyncio.fixture
async def external_client(
    database_url: str, key_dir: Path, jwks_server: _JWKSServer
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url,
        key_dir,
        trusted_issuers=[
            TrustedIssuer(
                issuer="https://sso.example/auth/realms/shared", jwks_url=jwks_server.url
            ),
            TrustedIssuer(
                issuer="https://sso.example/auth/realms/acme-ext", jwks_url=jwks_server.url
            ),
        ],
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.runtime.db.write() as conn:
            for name in ("acme-ext", "beta-ext"):
                if not await auth_service.TenantRepository.from_connection(conn).exists(name):
                    await auth_service.create_tenant(conn, name)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_external_issuer_tokens(external_client, jwks_server) -> None:
    now = int(time.time())
    realm_token = jwks_server.sign(
        {
            "iss": "https://sso.example/auth/realms/acme-ext",
            "sub": "svc",
            "exp": now + 600,
            "scope": "email profile",
        }
    )
    headers = {"Authorization": f"Bearer {realm_token}", "X-TWC-Tenant": "acme-ext"}
    assert (await external_client.get("/api/v1/events", headers=headers)).status_code == 200
    wrong = {**headers, "X-TWC-Tenant": "beta-ext"}
    assert (await external_client.get("/api/v1/events", headers=wrong)).status_code == 403

    shared = jwks_server.sign(
        {
            "iss": "https://sso.example/auth/realms/shared",
            "sub": "pos",
            "exp": now + 600,
            "tenantid": "beta-ext",
            "scope": "openid events:read",
        }
    )
    headers = {"Authorization": f"Bearer {shared}", "X-TWC-Tenant": "beta-ext"}
    assert (await external_client.get("/api/v1/events", headers=headers)).status_code == 200
    write = await external_client.post("/api/v1/events", json=event_body(), headers=headers)
    assert write.status_code == 403  # the token carries only events:read

    unknown_tenant = jwks_server.sign(
        {
            "iss": "https://sso.example/auth/realms/shared",
            "sub": "pos",
            "exp": now + 600,
            "tenantid": "not-registered",
        }
    )
    response = await external_client.get(
        "/api/v1/events",
        headers={"Authorization": f"Bearer {unknown_tenant}", "X-TWC-Tenant": "not-registered"},
    )
    assert response.status_code == 401
    assert "not registered" in response.json()["detail"]

    expired = jwks_server.sign(
        {"iss": "https://sso.example/auth/realms/acme-ext", "sub": "svc", "exp": now - 10}
    )
    response = await external_client.get(
        "/api/v1/events", headers={"Authorization": f"Bearer {expired}", "X-TWC-Tenant": "acme-ext"}
    )
    assert response.status_code == 401
