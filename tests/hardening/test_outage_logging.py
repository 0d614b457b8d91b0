"""A database outage answers every request 503; the log gets a throttled WARNING for them, not
an ERROR line per request (kit.http.log_server_error, kit.throttled_log)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import jwt
import pytest

from event_collector.app import create_app
from event_collector.auth.keys import load_signing_keys
from event_collector.kit import http as kit_http
from event_collector.kit.settings import Settings
from event_collector.kit.throttled_log import ThrottledLog
from tests.conftest import make_settings
from tests.factories import event_body

REQUESTS = 40
MESSAGE = kit_http._unavailable_log.message


def _unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'ec.db'}"
    return "postgresql+asyncpg://postgres@127.0.0.1:9/unreachable"  # nothing listens on 9


def _token(settings: Settings) -> str:
    """A well-formed token signed with the server's key: checking it needs the database."""
    signer = load_signing_keys(settings.key_dir)[0]
    now = int(time.time())
    claims = {
        "iss": settings.token_issuer,
        "sub": "client-1",
        "tenantid": "t",
        "scope": "events:read events:write",
        "iat": now,
        "exp": now + 600,
        "jti": "outage",
    }
    return jwt.encode(claims, signer.private_key, algorithm="RS256", headers={"kid": signer.kid})


async def test_an_outage_is_a_few_warnings_not_an_error_per_request(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The throttle is per process: an earlier test's outage line must not silence this one's.
    monkeypatch.setattr(kit_http, "_unavailable_log", ThrottledLog(kit_http.logger, MESSAGE))
    settings = make_settings(
        _unreachable_url(backend, tmp_path),
        tmp_path / "keys",
        auto_migrate=False,
        database_connect_timeout=1.0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {_token(settings)}", "X-TWC-Tenant": "t"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with caplog.at_level(logging.INFO, logger="event_collector"):
                for index in range(REQUESTS):
                    # Both kinds of route: FastAPI's (reads) and the raw ingest route.
                    if index % 2:
                        response = await client.get("/api/v1/events", headers=headers)
                    else:
                        response = await client.post(
                            "/api/v1/events", json=event_body(), headers=headers
                        )
                    assert response.status_code == 503, response.text

    failures = [r for r in caplog.records if r.getMessage().startswith("request failed")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    # One line a second: the loop takes a second or two on a loaded machine.
    assert 1 <= len(failures) <= 3, caplog.text
    assert all(r.levelno == logging.WARNING for r in failures)
    assert "not logged since the last line" in failures[-1].getMessage()
