"""Console fixtures: the app served over loopback HTTP (uvicorn in the test's event loop, with a
dispatcher), a webhook receiver that can be broken and mended, and headless chromium.

The browser is Debian's chromium (``/usr/bin/chromium``, installed by ``scripts/_python.sh``),
driven by Playwright; it is never downloaded. Without it the browser tests are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from event_collector.app import create_app
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, loopback_http, make_settings, make_tenant, wait_until
from tests.delivery.conftest import DELIVERY_OVERRIDES

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Webhook endpoints on loopback: 204, or ``status`` while ``broken`` (or for the paths in
    ``broken_paths``)."""

    base_url: str
    status: int = 500
    broken: bool = False
    broken_paths: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    @property
    def bodies(self) -> list[bytes]:
        return [r.body for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            assert state is not None
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.received.append(Received(self.path, headers, body))
            broken = state.broken or self.path in state.broken_paths
            self.send_response(state.status if broken else 204)
            self.send_header("content-length", "0")
            self.end_headers()

    with loopback_http(Handler) as base_url:
        state = Receiver(base_url=base_url)
        yield state


@dataclass
class LiveConsole:
    base_url: str
    runtime: Runtime
    http: httpx.AsyncClient

    async def tenant(self, scopes: list[str] | None = None) -> TenantFixture:
        return await make_tenant(self.runtime, self.http, scopes)


@pytest_asyncio.fixture(scope="module")
async def live(database_url: str, key_dir: Path) -> AsyncIterator[LiveConsole]:
    # With a dispatcher and a scheduler, as `event-collector serve` runs by default.
    settings = make_settings(
        database_url,
        key_dir,
        **(DELIVERY_OVERRIDES | {"scheduler_enabled": True}),
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), "the console server is up")
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url) as http:
        yield LiveConsole(base_url, app.state.runtime, http)
    server.should_exit = True
    await task


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        await launched.close()


@pytest_asyncio.fixture
async def page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh browser context per test; a screenshot under test-artifacts/ if the test fails.
    Parametrize it indirectly with False to browse with JavaScript off."""
    javascript = getattr(request, "param", True)
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=javascript
    )
    page = await context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
        await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    await context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


async def sign_in(page: Any, base_url: str, tenant: TenantFixture) -> None:
    await page.goto(f"{base_url}/console")
    await page.get_by_label("Client id").fill(tenant.client_id)
    await page.get_by_label("Client secret").fill(tenant.client_secret)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Dashboard").wait_for()
