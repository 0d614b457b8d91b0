"""Operations endpoints and the OpenAPI document."""

from __future__ import annotations

from event_collector.kit import migrate
from tests.factories import event_body


async def test_health_and_readiness(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["schema"] == migrate.head_revision()


async def test_readiness_reports_an_outdated_schema(client, context) -> None:
    # One step back, with the server's keys: the per-run database holds other tests' rows, and
    # a migration that seals secrets must open them on the way down.
    await migrate.downgrade(context.db, "-1", secrets=context.secrets)
    try:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert "event-collector migrate" in response.json()["detail"]
    finally:
        await migrate.upgrade(context.db, secrets=context.secrets)
    assert (await client.get("/readyz")).status_code == 200


async def test_metrics_count_requests_and_events(client, tenant) -> None:
    await client.post("/api/v1/events", json=event_body(event_type="ORDER"), headers=tenant.headers)
    text = (await client.get("/metrics")).text
    assert 'ec_http_requests_total{method="POST",route="/api/v1/events",status="201"}' in text
    assert (
        'ec_events_ingested_total{entity_type="ORDER",operation="CREATE",outcome="created"}' in text
    )
    assert tenant.name not in text


def _sample(text: str, prefix: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.rsplit(" ", 1)[1])


async def test_request_latency_histogram_counts_each_request_once(client) -> None:
    def count(text: str) -> float:
        return _sample(text, 'ec_http_request_seconds_count{route="/healthz"}')

    before = (await client.get("/metrics")).text
    for _ in range(3):
        await client.get("/healthz")
    after = (await client.get("/metrics")).text
    assert count(after) - count(before) == 3
    # Buckets are cumulative: +Inf holds every observation.
    assert _sample(after, 'ec_http_request_seconds_bucket{le="+Inf",route="/healthz"}') == count(
        after
    )
    assert _sample(after, 'ec_http_requests_total{method="GET",route="/healthz",status="200"}') >= 3


async def test_request_id_is_echoed(client) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    first = (await client.get("/healthz")).headers["x-request-id"]
    assert first != (await client.get("/healthz")).headers["x-request-id"]


async def test_openapi_documents_behaviour(client) -> None:
    schema = (await client.get("/openapi.json")).json()
    create = schema["paths"]["/api/v1/events"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventIn"
    }
    assert "EventIn" in schema["components"]["schemas"]
    assert {"201", "200", "400", "401", "403", "409", "413", "415"} <= set(create["responses"])
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert "422" not in operation["responses"], path
            if path.startswith("/api/"):
                assert operation["security"] == [{"bearerAuth": []}]
                assert any(p["name"] == "X-TWC-Tenant" for p in operation["parameters"])
    assert (await client.get("/docs")).status_code == 200
