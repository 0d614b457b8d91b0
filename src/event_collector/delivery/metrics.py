"""Delivery metrics (labels never carry tenants or subscription ids)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

deliveries = Counter(
    "ec_deliveries_total",
    "Delivery attempts by destination type and resulting state "
    "(delivered, retry, dead_letter, released)",
    ["destination_type", "state"],
)
attempt_latency = Histogram(
    "ec_delivery_attempt_seconds",
    "Latency of one send (a batch of up to 10 for SQS/SNS) by destination type and outcome",
    ["destination_type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
queue_depth = Gauge("ec_delivery_queue_depth", "Pending deliveries (due or scheduled)")
oldest_due_age = Gauge(
    "ec_delivery_oldest_due_age_seconds",
    "How long the oldest due pending delivery has been waiting (0 when none is due)",
)
in_flight = Gauge("ec_delivery_in_flight", "Deliveries leased by this process and being sent")
breakers_open = Gauge("ec_delivery_breakers_open", "Destinations whose circuit breaker is open")
subscriptions_deactivated = Counter(
    "ec_subscriptions_deactivated_total",
    "Subscriptions deactivated automatically after failing continuously",
)
