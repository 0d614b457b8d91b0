"""A measured wrk run against the service and the group-commit figures scraped around it."""

from __future__ import annotations

import argparse
from contextlib import suppress
from typing import Any

import httpx
from harness import WrkResult, profiled, run_wrk

GROUP_METRICS = (
    "ec_ingest_group_events_sum",
    "ec_ingest_group_events_count",
    "ec_ingest_group_seconds_sum",
)


def warm_and_measure(
    args: argparse.Namespace,
    db: Any,
    pid: int,
    port: int,
    tenant: Any,
    path: str,
    script: str,
    connections: int,
    label: str,
) -> tuple[int, Any, int, Any]:
    """A warm-up wrk run, then the measured one (profiled with --profile): returns the event
    count after warm-up, wrk's result, the events stored while it ran and group statistics."""
    run_wrk(port, path, script, connections=connections, duration=args.warmup, tenant=tenant)
    warm = db.count_events()
    groups_before = scrape_groups(port)
    with profiled(args, pid, label):
        result = run_wrk(
            port,
            path,
            script,
            connections=connections,
            duration=args.duration,
            tenant=tenant,
            watch_pid=pid,
        )
    stored = db.count_events() - warm
    return warm, result, stored, group_stats(groups_before, scrape_groups(port), result.duration_s)


def scrape_groups(port: int) -> dict[str, float]:
    """The group-commit counters of the service's /metrics (empty if it has none)."""
    values: dict[str, float] = {}
    with suppress(httpx.HTTPError):
        for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
            name, _, value = line.partition(" ")
            if name in GROUP_METRICS:
                values[name] = float(value)
    return values


def group_stats(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, Any]:
    """Group commits during a run: how many per second, how big, how long each took."""
    if not after or not before:
        return {}
    groups = after["ec_ingest_group_events_count"] - before["ec_ingest_group_events_count"]
    if groups <= 0:
        return {}
    events = after["ec_ingest_group_events_sum"] - before["ec_ingest_group_events_sum"]
    stats: dict[str, Any] = {
        "groups_per_s": groups / seconds,
        "mean_group_events": events / groups,
    }
    if "ec_ingest_group_seconds_sum" in after and "ec_ingest_group_seconds_sum" in before:
        spent = after["ec_ingest_group_seconds_sum"] - before["ec_ingest_group_seconds_sum"]
        stats["mean_group_ms"] = spent / groups * 1000
        # Share of the run during which a group transaction was open (>1 on PostgreSQL, which
        # overlaps several).
        stats["in_transaction_share"] = spent / seconds
    return stats


def group_note(stats: dict[str, Any]) -> str:
    if not stats:
        return ""
    note = f" groups: {stats['groups_per_s']:,.0f}/s of {stats['mean_group_events']:.1f} events"
    if "mean_group_ms" in stats:
        note += f", {stats['mean_group_ms']:.1f} ms each"
    return note


def error_note(result: WrkResult) -> str:
    errors = {k: v for k, v in result.errors.items() if v}
    return f" errors: {errors}" if errors else ""
