"""Delivery fixtures: a moto server (SQS/SNS), a webhook receiver on loopback, and an app whose
dispatcher runs with a tiny retry schedule and reaches both."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI
from moto.server import ThreadedMotoServer

from event_collector.app import create_app
from event_collector.kit.settings import Settings
from tests.conftest import loopback_http, make_settings


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Paths: /ok → 204; /status/<code> → <code>; /flaky/<n> → 503 (Retry-After: 1) for the
    first n requests of each webhook-id, then 200; /slow → waits for ``release`` then 200."""

    base_url: str
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    held: list[str] = field(default_factory=list)  # paths of /slow requests being held
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def for_path(self, prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.startswith(prefix)]


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver | None = None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            assert receiver is not None
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            record = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
            )
            path = self.path
            if path.startswith("/slow"):
                with receiver.lock:
                    receiver.held.append(path)
                receiver.release.wait(60)
            with receiver.lock:
                receiver.received.append(record)
                msg_id = record.headers.get("webhook-id", "")
                count = receiver.seen.get(path + msg_id, 0)
                receiver.seen[path + msg_id] = count + 1
            status, headers = 200, {}
            if path.startswith("/ok"):
                status = 204
            elif path.startswith("/status/"):
                status = int(path.split("/")[2])
            elif path.startswith("/flaky/") and count < int(path.split("/")[2]):
                status, headers = 503, {"Retry-After": "1"}
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

    with loopback_http(Handler) as base_url:
        receiver = WebhookReceiver(base_url=base_url)
        yield receiver
        receiver.release.set()  # let held /slow requests finish before the server stops


DELIVERY_OVERRIDES: dict[str, Any] = {
    "dispatcher_enabled": True,
    "webhook_allowed_hosts": ["127.0.0.1"],
    "delivery_retry_schedule": [0.2, 0.2],
    "delivery_retry_jitter": 0.0,
    "delivery_breaker_failures": 3,
    # Fewer parallel sends than the breaker tests' deliveries (the default is 16), so that the
    # breaker opens while some of them are still queued and spreads the attempts over time.
    "delivery_concurrency_per_destination": 4,
    "delivery_breaker_cooldown_seconds": 0.5,
    "delivery_deactivate_after": timedelta(seconds=3),
    "delivery_lease_seconds": 5.0,
    "delivery_idle_poll_seconds": 1.0,
    "delivery_http_timeout_seconds": 5.0,
}


@pytest.fixture(scope="session")
def delivery_settings(
    database_url: str, key_dir: Path, moto_endpoint: str, webhook_receiver: WebhookReceiver
) -> Settings:
    return make_settings(
        database_url, key_dir, aws_endpoint_url=moto_endpoint, **DELIVERY_OVERRIDES
    )


@pytest_asyncio.fixture(scope="module")
async def app(
    request: pytest.FixtureRequest, app: FastAPI, delivery_settings: Settings
) -> AsyncIterator[FastAPI]:
    """The shared app of tests/conftest.py (and so its ``context``, ``client``, ``tenant`` and
    ``other_tenant``), except in modules that set ``DISPATCHER = True``: those get an app of
    their own whose dispatcher runs with ``DELIVERY_OVERRIDES``. One per module: its dispatcher
    must not go on sending (and changing rows) while other modules' tests, which run without
    one, look at their delivery rows and subscriptions."""
    if not getattr(request.module, "DISPATCHER", False):
        yield app
        return
    application = create_app(delivery_settings)
    async with application.router.lifespan_context(application):
        yield application
