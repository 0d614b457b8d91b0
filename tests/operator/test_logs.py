"""Quiet, useful logs (issue 13 item 4): readiness probes log nothing; the optional access log."""

from __future__ import annotations

import json
import logging

import pytest

from event_collector.kit.logging import JsonFormatter, access_log
from tests.factories import event_body


async def test_readiness_probe_logs_nothing(client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            assert (await client.get("/readyz")).status_code == 200
    # (httpx, the test's own client, logs each request it makes)
    service_lines = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.INFO and r.name != "httpx"
    ]
    assert service_lines == []


@pytest.fixture
def access_log_on():
    access_log.enabled = True
    try:
        yield
    finally:
        access_log.enabled = False


async def test_access_log_has_method_route_template_status_duration_and_request_id(
    client, tenant, access_log_on, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="event_collector.access"):
        # a raw route (the hot ingest path) and a FastAPI route with a path parameter
        created = await client.post(
            "/api/v1/events",
            json=event_body(id="evt-access-1"),
            headers={**tenant.headers, "X-Request-ID": "req-raw"},
        )
        fetched = await client.get(
            "/api/v1/events/evt-access-1", headers={**tenant.headers, "X-Request-ID": "req-get"}
        )
    assert created.status_code == 201
    assert fetched.status_code == 200
    lines = [r for r in caplog.records if r.name == "event_collector.access"]
    assert len(lines) == 2
    formatter = JsonFormatter()
    entries = [json.loads(formatter.format(record)) for record in lines]
    assert entries[0]["method"] == "POST"
    assert entries[0]["route"] == "/api/v1/events"
    assert entries[0]["status"] == 201
    assert entries[0]["request_id"] == "req-raw"
    assert entries[1]["method"] == "GET"
    assert entries[1]["route"] == "/api/v1/events/{event_id}"
    assert entries[1]["status"] == 200
    assert entries[1]["request_id"] == "req-get"
    assert all(entry["duration_ms"] >= 0 for entry in entries)
    assert tenant.name not in json.dumps(entries)


async def test_access_log_is_off_by_default(client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="event_collector.access"):
        assert (await client.get("/healthz")).status_code == 200
    assert [r for r in caplog.records if r.name == "event_collector.access"] == []


def test_ec_access_log_setting_turns_it_on(settings) -> None:
    from event_collector.app import create_app

    try:
        create_app(settings.model_copy(update={"access_log": True}))
        assert access_log.enabled is True
        create_app(settings)
        assert access_log.enabled is False
    finally:
        access_log.enabled = False
