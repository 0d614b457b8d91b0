"""Batch ingest: POST /api/v1/events/batch with 500 events per request (run on the ingest
scenario's service)."""

from __future__ import annotations

import argparse
from typing import Any

from harness import Results, Row

from scenarios.measure import error_note, group_note, warm_and_measure


def measure_batches(
    args: argparse.Namespace,
    results: Results,
    kind: str,
    db: Any,
    pid: int,
    port: int,
    tenant: Any,
    baseline_rps: float,
) -> None:
    _, result, stored, groups = warm_and_measure(
        args,
        db,
        pid,
        port,
        tenant,
        "/api/v1/events/batch",
        "post_batch.lua",
        args.batch_connections,
        f"batch-{kind}",
    )
    # Events stored while wrk ran (a batch is all-or-nothing per transaction).
    events_per_s = stored / result.duration_s
    results.add(
        Row(
            "ingest batches of 500",
            kind,
            events_per_s,
            "events/s",
            ratio=events_per_s / baseline_rps,
            p50_ms=result.latency_us["p50"] / 1000,
            p99_ms=result.latency_us["p99"] / 1000,
            target="≥ 20,000 events/s",
            cpu_share=result.cpu_share,
            cpu_us=(result.server_cpu_s or 0) / stored * 1e6 if stored else None,
            met=events_per_s >= 20_000 and result.error_count == 0,
            note=(error_note(result) + group_note(groups)).strip(),
            details={
                "group_commits": groups,
                "connections": args.batch_connections,
                "requests": result.requests,
                "events_stored": stored,
                "errors": result.errors,
                "latency_us": result.latency_us,
                "wrk_cpu_share": result.wrk_cpu_share,
            },
        )
    )
