"""Bodies, slow clients and limits (issue 12 items 3 and 5).

The first half runs through the app on both databases: the request guard (token before body,
401 before 415), body limits, per-tenant rate limits and caps. The second half runs a real
`event-collector serve` process, because what it proves lives in the HTTP protocol and the
process's memory: slowloris heads, idle keep-alive, the connection cap, oversized bodies.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from event_collector.app import create_app
from event_collector.kit.errors import ConfigurationError, RateLimited
from event_collector.kit.ratelimit import RateLimiter
from event_collector.kit.settings import load_settings
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, make_settings, make_tenant
from tests.factories import event_body
from tests.jobs.helpers import seed_shaped
from tests.subscriptions.helpers import URL as SUBSCRIPTIONS
from tests.subscriptions.helpers import subscription_body

JOBS = "/api/v1/jobs"
EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"


# --- the request guard: token first, then media type, then size -----------------------------


@pytest.mark.parametrize("path", [SUBSCRIPTIONS, JOBS, EVENTS, BATCH])
async def test_a_token_less_post_is_401_before_any_media_type_check(
    client: httpx.AsyncClient, tenant: TenantFixture, path: str
) -> None:
    tenant_only = {"X-TWC-Tenant": tenant.name}
    for headers in ({}, {"Content-Type": "text/plain"}):
        response = await client.post(path, content=b"a=b", headers={**tenant_only, **headers})
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "Unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
        # The body was never read: the server does not read on either.
        assert response.headers["connection"] == "close"
    bad_token = {**tenant_only, "Authorization": "Bearer not-a-token"}
    response = await client.post(path, content=b"a=b", headers=bad_token)
    assert response.status_code == 401
    response = await client.post(path, content=b"a=b", headers=tenant.headers)
    assert response.status_code == 415
    assert response.json()["error"] == "UnsupportedMediaType"


async def test_a_token_for_another_tenant_is_refused_before_the_body(
    client: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    headers = {**tenant.headers, "X-TWC-Tenant": other_tenant.name}
    response = await client.post(SUBSCRIPTIONS, content=b"x", headers=headers)
    assert response.status_code == 403
    response = await client.post(
        SUBSCRIPTIONS, content=b"x", headers={"Authorization": tenant.headers["Authorization"]}
    )
    assert response.status_code == 400
    assert "X-TWC-Tenant" in response.json()["detail"]


async def _chunks(total: int, size: int = 64 << 10) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBSCRIPTIONS),
        ("PUT", f"{SUBSCRIPTIONS}/x"),
        ("POST", JOBS),
        ("PUT", "/api/v1/email-settings"),
    ],
)
async def test_every_api_route_refuses_an_over_limit_body(
    client: httpx.AsyncClient, tenant: TenantFixture, settings: Any, method: str, path: str
) -> None:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    over = settings.max_body_bytes + 1
    declared = await client.request(method, path, content=b" " * over, headers=headers)
    assert declared.status_code == 413, declared.text
    assert str(settings.max_body_bytes) in declared.json()["detail"]
    chunked = await client.request(method, path, content=_chunks(over), headers=headers)
    assert chunked.status_code == 413, chunked.text
    assert chunked.headers["connection"] == "close"


async def test_the_token_endpoint_refuses_an_over_limit_form(
    client: httpx.AsyncClient, settings: Any
) -> None:
    response = await client.post(
        "/oauth/token",
        content=b"a" * (settings.max_body_bytes + 1),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


async def test_a_chunked_body_within_the_limit_still_reaches_the_route(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    raw = json.dumps(subscription_body()).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 7):
            yield raw[start : start + 7]

    response = await client.post(
        SUBSCRIPTIONS,
        content=pieces(),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


# --- per-tenant rate limits -------------------------------------------------------------------


def test_the_token_bucket_admits_a_burst_then_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, what="on the API", clock=lambda: now[0])
    for _ in range(3):
        limiter.admit("acme")
    with pytest.raises(RateLimited) as refused:
        limiter.admit("acme")
    assert refused.value.headers == {"Retry-After": "1"}
    assert "acme" in refused.value.detail
    assert "retry after 1 s" in refused.value.detail
    limiter.admit("other")  # every tenant has its own bucket
    now[0] += 0.5  # one token back at 2 per second
    limiter.admit("acme")
    with pytest.raises(RateLimited):
        limiter.admit("acme")
    now[0] += 3600  # an idle tenant gets its burst back, no more
    for _ in range(3):
        limiter.admit("acme")
    with pytest.raises(RateLimited):
        limiter.admit("acme")


async def _app_with(database_url: str, key_dir: Path, **overrides: Any) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(database_url, key_dir, **overrides))
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture(scope="module")
async def rate_limited_app(database_url: str, key_dir: Path) -> AsyncIterator[FastAPI]:
    async for app in _app_with(
        database_url,
        key_dir,
        rate_limit_api_per_second=4.0,
        rate_limit_api_burst=3,
        rate_limit_ingest_per_second=4.0,
        rate_limit_ingest_burst=2,
    ):
        yield app


@asynccontextmanager
async def _client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest_asyncio.fixture
async def limited_client(rate_limited_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client_of(rate_limited_app) as http:
        yield http


async def _until_admitted(send: Any, within: float = 10.0) -> httpx.Response:
    """Poll ``send()`` until it is no longer 429 (the bucket refills)."""
    deadline = time.monotonic() + within
    while True:
        response: httpx.Response = await send()
        if response.status_code != 429:
            return response
        assert time.monotonic() < deadline, "the rate limit never admitted the tenant again"
        await asyncio.sleep(0.05)


async def test_the_api_rate_limit_answers_429_with_retry_after_then_recovers(
    rate_limited_app: FastAPI, limited_client: httpx.AsyncClient
) -> None:
    runtime: Runtime = rate_limited_app.state.runtime
    tenant = await make_tenant(runtime, limited_client)
    other = await make_tenant(runtime, limited_client)

    async def listing(who: TenantFixture = tenant) -> httpx.Response:
        return await limited_client.get(SUBSCRIPTIONS, headers=who.headers)

    statuses = [(await listing()).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    refused = await listing()
    assert refused.status_code == 429
    assert refused.json()["error"] == "RateLimited"
    assert tenant.name in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    # A write is refused before its body is read, like any request over the rate.
    write = await limited_client.post(
        SUBSCRIPTIONS, json=subscription_body(), headers=tenant.headers
    )
    assert write.status_code == 429
    assert (await listing(other)).status_code == 200  # other tenants are not held back
    assert (await _until_admitted(listing)).status_code == 200


async def test_the_ingest_rate_limit_is_its_own(
    rate_limited_app: FastAPI, limited_client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(rate_limited_app.state.runtime, limited_client)

    async def ingest() -> httpx.Response:
        return await limited_client.post(EVENTS, json=event_body(), headers=tenant.headers)

    assert [(await ingest()).status_code for _ in range(2)] == [201, 201]
    refused = await ingest()
    assert refused.status_code == 429
    assert "ingest" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "1"
    # The API's bucket is untouched by ingest.
    listed = await limited_client.get(SUBSCRIPTIONS, headers=tenant.headers)
    assert listed.status_code == 200
    assert (await _until_admitted(ingest)).status_code == 201


# --- per-tenant caps ----------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def capped_app(database_url: str, key_dir: Path) -> AsyncIterator[FastAPI]:
    async for app in _app_with(
        database_url, key_dir, max_subscriptions_per_tenant=2, max_jobs_per_tenant=2
    ):
        yield app


@pytest_asyncio.fixture
async def capped_client(capped_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client_of(capped_app) as http:
        yield http


async def test_subscriptions_over_the_cap_are_400(
    capped_app: FastAPI, capped_client: httpx.AsyncClient
) -> None:
    runtime: Runtime = capped_app.state.runtime
    tenant = await make_tenant(runtime, capped_client)
    other = await make_tenant(runtime, capped_client)
    for active in (True, False):  # inactive subscriptions count too
        created = await capped_client.post(
            SUBSCRIPTIONS, json=subscription_body(active=active), headers=tenant.headers
        )
        assert created.status_code == 201, created.text
    over = await capped_client.post(SUBSCRIPTIONS, json=subscription_body(), headers=tenant.headers)
    assert over.status_code == 400
    assert "EC_MAX_SUBSCRIPTIONS_PER_TENANT" in over.json()["detail"]
    listed = await capped_client.get(
        SUBSCRIPTIONS, params={"include_inactive": "true"}, headers=tenant.headers
    )
    assert len(listed.json()) == 2  # the refused one changed nothing
    elsewhere = await capped_client.post(
        SUBSCRIPTIONS, json=subscription_body(), headers=other.headers
    )
    assert elsewhere.status_code == 201


async def test_jobs_over_the_cap_are_400_and_deleting_one_makes_room(
    capped_app: FastAPI, capped_client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(capped_app.state.runtime, capped_client)
    first, second, third = (seed_shaped() for _ in range(3))
    for body in (first, second):
        assert (
            await capped_client.post(JOBS, json=body, headers=tenant.headers)
        ).status_code == 201
    over = await capped_client.post(JOBS, json=third, headers=tenant.headers)
    assert over.status_code == 400
    assert "EC_MAX_JOBS_PER_TENANT" in over.json()["detail"]
    assert (
        await capped_client.get(f"{JOBS}/{third['id']}", headers=tenant.headers)
    ).status_code == 404
    deleted = await capped_client.delete(f"{JOBS}/{first['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (await capped_client.post(JOBS, json=third, headers=tenant.headers)).status_code == 201
    # Undeleting the first would make three.
    undelete = await capped_client.put(
        f"{JOBS}/{first['id']}", json={"deleted": False}, headers=tenant.headers
    )
    assert undelete.status_code == 400
    assert "EC_MAX_JOBS_PER_TENANT" in undelete.json()["detail"]


# --- a real server: slow clients, the connection cap, oversized bodies ----------------------

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 3.0
KEEPALIVE_TIMEOUT = 1.0
MAX_CONNECTIONS = 8
MAX_BATCH_BODY = 4 << 20
HUGE = 200 << 20  # what an attacker sends: far more than any limit


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.base = f"http://127.0.0.1:{port}"
        self.headers: dict[str, str] = {}

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10 * HEAD_TIMEOUT)
        return sock

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set (VmHWM): a body buffered even for a moment shows."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kilobytes = re.search(r"VmHWM:\s+(\d+) kB", status)
        assert kilobytes is not None
        return int(kilobytes.group(1)) * 1024

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def connections_cut(self, reason: str) -> float:
        metrics = httpx.get(f"{self.base}/metrics").text
        found = re.search(rf'ec_http_connections_cut_total{{reason="{reason}"}} (\S+)', metrics)
        return float(found.group(1)) if found else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: Server, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.output()
        try:
            if httpx.get(f"{server.base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not become ready: {server.output()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env.update(
        EC_PORT=str(port),
        EC_DATABASE_URL=f"sqlite:///{directory / 'ec.db'}",
        EC_KEY_DIR=str(directory / "keys"),
        EC_BOOTSTRAP_DEMO="true",
        EC_DISPATCHER_ENABLED="false",
        EC_SCHEDULER_ENABLED="false",
        EC_HTTP_HEADER_TIMEOUT_SECONDS=str(HEAD_TIMEOUT),
        EC_HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        EC_HTTP_KEEPALIVE_TIMEOUT_SECONDS=str(KEEPALIVE_TIMEOUT),
        EC_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        EC_MAX_BATCH_BODY_BYTES=str(MAX_BATCH_BODY),
    )
    log = directory / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "event_collector", "serve"],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(process, port, log)
    try:
        _wait_ready(running)
        client_id = re.search(r"client_id:\s+(\S+)", running.output())
        secret = re.search(r"client_secret:\s+(\S+)", running.output())
        assert client_id, running.output()
        assert secret, running.output()
        token = httpx.post(
            f"{running.base}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id.group(1),
                "client_secret": secret.group(1),
            },
        ).json()["access_token"]
        running.headers = {"Authorization": f"Bearer {token}", "X-TWC-Tenant": "demo"}
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out,
    which fails the test: the server kept it open)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open; got {received!r}") from None
        if not chunk:
            return received
        received += chunk


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head and its Content-Length body) from a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed in the middle of a response: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head.lower())
    assert length is not None, head
    while len(body) < int(length.group(1)):
        chunk = sock.recv(65536)
        assert chunk, f"closed in the middle of a response: {received!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def _served(server: Server) -> bool:
    try:
        return httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _wait_served(server: Server, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not _served(server):
        assert time.monotonic() < deadline, "the server does not serve a legitimate client"
        time.sleep(0.05)


def test_slowloris_heads_are_cut_off_and_real_clients_are_served(server: Server) -> None:
    _wait_served(server)
    silent = server.connect()  # connects and never sends a byte
    partial = [server.connect() for _ in range(3)]
    for sock in partial:
        sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    trickle = server.connect()  # a header line at a time: bytes do not restart the clock
    trickle.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()
    # While they hang, a real client is served.
    assert _served(server)
    while not select.select([trickle], [], [], 0.1)[0]:
        assert time.monotonic() - started < 10 * HEAD_TIMEOUT, "the trickling head was not cut off"
        trickle.sendall(b"X-Slow: 1\r\n")
    for sock in [silent, *partial, trickle]:
        received = _read_until_closed(sock)
        assert received.startswith(b"HTTP/1.1 408 "), received
        assert b"was not complete within 1 s" in received
        sock.close()
    # Cut off at the configured time (a bound on the behaviour, not a benchmark).
    assert time.monotonic() - started < HEAD_TIMEOUT + 5
    assert "request head was not complete within 1 s" in server.output()
    assert server.connections_cut("head_timeout") >= 5
    assert _served(server)


def test_idle_keep_alive_connections_are_closed(server: Server) -> None:
    _wait_served(server)
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 200"), first
        assert b"connection: close" not in first.lower()
        # Kept alive: a second request on it is served...
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        # ... then, idle, it is closed by the server.
        assert _read_until_closed(sock) == b""
    with server.connect() as sock:
        # A kept-alive connection that starts another head and stalls is cut off too.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 408")


TOKEN_FORM = b"grant_type=client_credentials&client_id=nobody&client_secret=nothing"


def _form_head(length: int) -> bytes:
    return (
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" % length
    )


def test_a_body_that_stops_coming_is_cut_off(server: Server) -> None:
    _wait_served(server)
    with server.connect() as sock:
        # The token route reads bodies without a token: the easiest to hold open.
        sock.sendall(_form_head(len(TOKEN_FORM)) + TOKEN_FORM[:10])
        received = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"request body paused for over 3 s" in received
    assert "request body paused for over 3 s" in server.output()
    assert server.connections_cut("body_timeout") >= 1


def test_a_slow_body_that_keeps_coming_is_served(server: Server) -> None:
    _wait_served(server)
    with server.connect() as sock:
        sock.sendall(_form_head(len(TOKEN_FORM)))
        pieces = [TOKEN_FORM[start : start + 10] for start in range(0, len(TOKEN_FORM), 10)]
        started = time.monotonic()
        for piece in pieces:  # together longer than the body timeout, each pause shorter
            sock.sendall(piece)
            time.sleep(BODY_TIMEOUT / 5)
        assert time.monotonic() - started > BODY_TIMEOUT
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 401 "), response  # an unknown client, not a 408


def test_connections_over_the_cap_are_answered_503_and_closed(server: Server) -> None:
    _wait_served(server)
    # Requests whose head is complete and whose body never comes hold their connections.
    held = [server.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(_form_head(100))
        with server.connect() as extra:
            received = _read_until_closed(extra)
        assert received.startswith(b"HTTP/1.1 503 "), received
        assert b"retry-after: 1" in received.lower()
        assert "refused a connection: the server holds its cap of 8" in server.output()
    finally:
        for sock in held:
            sock.close()
    _wait_served(server)
    assert server.connections_cut("over_cap") >= 1


def _send_body(
    server: Server, path: str, headers: dict[str, str], total: int, *, chunked: bool
) -> tuple[int, bytes]:
    """POST ``total`` bytes (declared or chunked) while reading the answer; the status and the
    response. The sender stops when the server closes the connection."""
    lines = [f"POST {path} HTTP/1.1", "Host: x", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sock = server.connect()
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    piece = b"[" * (256 << 10)
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece

    def send() -> None:
        try:
            for _ in range(total // len(piece)):
                sock.sendall(frame)
        except OSError:
            pass  # the server refused the body and closed

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        response = _read_until_closed(sock)
    finally:
        sock.close()
        sender.join(timeout=30)
    status = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert status is not None, response[:200]
    return int(status.group(1)), response


@pytest.mark.parametrize(
    ("path", "authenticated", "chunked", "status"),
    [
        (SUBSCRIPTIONS, False, False, 401),
        (SUBSCRIPTIONS, False, True, 401),
        (SUBSCRIPTIONS, True, False, 413),
        (SUBSCRIPTIONS, True, True, 413),
        (JOBS, True, True, 413),
        (EVENTS, False, False, 401),
        (BATCH, True, False, 413),
        (BATCH, True, True, 413),
        ("/oauth/token", False, True, 413),
    ],
)
def test_an_oversized_body_is_refused_without_buffering_it(
    server: Server, path: str, authenticated: bool, chunked: bool, status: int
) -> None:
    _wait_served(server)
    headers = {"Content-Type": "application/json"}
    if authenticated:
        headers.update(server.headers)
    before = server.peak_rss_bytes()
    answered, response = _send_body(server, path, headers, HUGE, chunked=chunked)
    assert answered == status, response[:300]
    assert b"connection: close" in response.lower()
    grown = server.peak_rss_bytes() - before
    assert grown < 32 << 20, f"the server's peak RSS grew by {grown >> 20} MiB"
    assert _served(server)


def test_serve_refuses_a_connection_cap_the_descriptor_limit_cannot_hold(tmp_path: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env.update(EC_HTTP_MAX_CONNECTIONS="5000", EC_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    result = subprocess.run(
        [sys.executable, "-m", "event_collector", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "EC_HTTP_MAX_CONNECTIONS=5000 needs about 5084 file descriptors" in message
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("http_header_timeout_seconds", 0),
        ("http_body_timeout_seconds", -1),
        ("http_keepalive_timeout_seconds", 0),
        ("http_max_connections", 0),
        ("rate_limit_api_per_second", -1),
        ("rate_limit_ingest_burst", 0),
        ("max_subscriptions_per_tenant", 0),
        ("max_jobs_per_tenant", 0),
    ],
)
def test_limit_settings_are_validated_at_start_up(variable: str, value: float) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(**{variable: value})
    assert refused.value.detail.startswith(f"invalid configuration: EC_{variable.upper()}: ")
