"""Test fixtures: the whole suite runs against SQLite and PostgreSQL, through the real app.

* ``backend`` parametrises every test that uses the app over ``sqlite`` and ``postgres``.
  PostgreSQL comes from ``EC_TEST_POSTGRES_URL`` (default: the local server as ``postgres``);
  each test session creates a fresh database and drops it at the end. When the server cannot be
  reached the PostgreSQL half is skipped, unless ``EC_TEST_REQUIRE_POSTGRES=1`` (CI), where it
  fails instead.
* Tests isolate themselves by tenant: each gets a new tenant (``tenant`` fixture), so one
  migrated database serves the whole session, as one database serves many tenants in production.
* A dispatcher serves every tenant, so the subscriptions of the tenants a test made in the shared
  database are made inactive when the test ends (``_retire_tenants``): a later module's
  dispatcher must not send an earlier test's leftover deliveries (to loopback receivers long
  gone, or to hosts like ``hooks.example.com`` that mean a real DNS lookup).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from event_collector.app import create_app
from event_collector.auth import service as auth_service
from event_collector.kit.settings import Settings
from event_collector.models import subscription_table
from event_collector.runtime import Runtime

POSTGRES_ADMIN_URL = os.environ.get(
    "EC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("EC_TEST_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgres"]
# The session's shared databases, and the (database URL, tenant) pairs make_tenant created.
_SHARED_URLS: set[str] = set()
_MADE_TENANTS: list[tuple[str, str]] = []


def pytest_report_header() -> str:
    return f"postgres: {POSTGRES_ADMIN_URL} (required: {REQUIRE_POSTGRES})"


async def _create_postgres_database() -> str:
    name = f"ec_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def _drop_postgres_database(url: str) -> None:
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(scope="session")
async def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if backend == "sqlite":
        shared = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'event-collector.db'}"
        _SHARED_URLS.add(shared)
        yield shared
        return
    url = await _create_postgres_database()
    shared = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    _SHARED_URLS.add(shared)
    yield shared
    await _drop_postgres_database(url)


@pytest_asyncio.fixture(autouse=True)
async def _retire_tenants() -> AsyncIterator[None]:
    """Make the subscriptions of the tenants this test made in a shared database inactive when
    it ends, so that no later dispatcher sends their deliveries (see the module docstring).

    Only tenants made after this fixture (function-scoped fixtures and the test body: autouse
    fixtures come first in their scope); those of wider-scoped fixtures outlive the test. Through
    an engine of its own: the app that made a tenant may have stopped by now."""
    start = len(_MADE_TENANTS)
    yield
    made = _MADE_TENANTS[start:]
    del _MADE_TENANTS[start:]
    for url in {url for url, _ in made if url in _SHARED_URLS}:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(subscription_table)
                    .where(subscription_table.c.tenant.in_([t for u, t in made if u == url]))
                    .values(active=False)
                )
        finally:
            await engine.dispose()


@pytest_asyncio.fixture
async def empty_database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database of the session's backend with nothing in it (for migration tests)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    url = await _create_postgres_database()
    yield url.replace("postgresql://", "postgresql+asyncpg://", 1)
    await _drop_postgres_database(url)


def make_settings(database_url: str, key_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "key_dir": key_dir,
        "auto_migrate": True,
        "bootstrap_demo": False,
        "token_cache_seconds": 0,
        # Delivery tests run their own app with a dispatcher (tests/delivery/conftest.py).
        "dispatcher_enabled": False,
        # Job tests run their own schedulers (tests/jobs).
        "scheduler_enabled": False,
        # The server's own AWS credentials are allowed for the suite's stand-in account only
        # (LocalStack's); every other destination needs its own keys (tests/hardening).
        "aws_server_credentials_allow": ["000000000000"],
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def settings(database_url: str, key_dir: Path) -> Settings:
    return make_settings(database_url, key_dir)


@pytest_asyncio.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def context(app: FastAPI) -> Runtime:
    ctx: Runtime = app.state.runtime
    return ctx


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class TenantFixture:
    name: str
    client_id: str
    client_secret: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-TWC-Tenant": self.name}


async def make_tenant(
    context: Runtime, http: httpx.AsyncClient, scopes: list[str] | None = None
) -> TenantFixture:
    name = f"t-{uuid.uuid4().hex[:12]}"
    async with context.db.write() as conn:
        await auth_service.create_tenant(conn, name)
        issued = await auth_service.create_client(conn, name, scopes=scopes)
    response = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": issued.client_id,
            "client_secret": issued.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    _MADE_TENANTS.append((context.settings.database_url, name))
    return TenantFixture(
        name, issued.client_id, issued.client_secret, response.json()["access_token"]
    )


@pytest_asyncio.fixture
async def tenant(context: Runtime, client: httpx.AsyncClient) -> TenantFixture:
    return await make_tenant(context, client)


@pytest_asyncio.fixture
async def other_tenant(context: Runtime, client: httpx.AsyncClient) -> TenantFixture:
    return await make_tenant(context, client)


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    within: float = 10.0,
    interval: float = 0.01,
) -> None:
    """Wait for ``condition()`` (a function or a coroutine function) to hold, instead of
    sleeping for a guessed time; fail with ``what`` when it does not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting until {what}")
        await asyncio.sleep(interval)


@contextmanager
def loopback_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a free loopback port answering with ``handler`` (a thread per request)
    while the block runs; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
