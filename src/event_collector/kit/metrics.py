"""Prometheus metrics shared by every domain (labels never carry tenant names or ids)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

http_requests = Counter(
    "ec_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"]
)
http_latency = Histogram(
    "ec_http_request_seconds",
    "HTTP request latency by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
events_ingested = Counter(
    "ec_events_ingested_total",
    "Events accepted, by entity type, operation and outcome",
    ["entity_type", "operation", "outcome"],
)
ingest_group_size = Histogram(
    "ec_ingest_group_events",
    "Events written per group-commit transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
ingest_group_seconds = Histogram(
    "ec_ingest_group_seconds",
    "Duration of a group-commit transaction (with the wait for a connection), to its COMMIT's end",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
