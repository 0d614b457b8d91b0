"""Prometheus metrics shared by every domain (labels never carry tenant names or ids)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric


class RequestMetrics:
    """``ec_http_requests_total`` and ``ec_http_request_seconds``, counted in plain dicts by the
    event loop and turned into Prometheus families when scraped (by the same loop).

    A prometheus_client child takes a lock per update: counting every request that way cost
    2-3 µs, several percent of an ingest request's CPU.
    """

    _BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        # per route: observations per bucket (the last one is +Inf), then their sum
        self._latency: dict[str, tuple[list[int], list[float]]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = ([0] * (len(self._BUCKETS) + 1), [0.0])
        latency[0][bisect_left(self._BUCKETS, seconds)] += 1
        latency[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "ec_http_requests",
            "HTTP requests by route and status",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in list(self._requests.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "ec_http_request_seconds", "HTTP request latency by route", labels=["route"]
        )
        bounds = [*(str(float(bound)) for bound in self._BUCKETS), "+Inf"]
        for route, (counts, total) in list(self._latency.items()):
            cumulative, running = [], 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([route], cumulative, sum_value=total[0])
        yield latency


request_metrics = RequestMetrics()
REGISTRY.register(request_metrics)
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
http_connections_cut = Counter(
    "ec_http_connections_cut_total",
    "Connections the server closed or refused to protect itself (kit.server), by reason",
    ["reason"],
)
