"""Single-event ingest: POST /api/v1/events from many connections. The service it starts also
serves the memory and batch scenarios (one start per database)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness import Results, Row, Service, fresh_database, provision, rss_mb

from scenarios import batch, memory
from scenarios.measure import error_note, group_note, warm_and_measure


def run_ingest(
    args: argparse.Namespace, results: Results, kind: str, workdir: Path, baseline_rps: float
) -> None:
    """The ingest, memory and batch scenarios (those of ``args.scenarios``) on one service."""
    with fresh_database(kind, workdir, args.postgres_url) as db:
        service = Service(db, workdir)
        try:
            api = service.start_api()
            tenant = provision(service.env, service.base_url)
            time.sleep(1.0)
            port = service.api_ports[0]
            if "memory" in args.scenarios:
                memory.add_idle(results, kind, rss_mb(api.pid))
            if "ingest" in args.scenarios or "memory" in args.scenarios:
                before = db.count_events()
                warm, result, stored, groups = warm_and_measure(
                    args,
                    db,
                    api.pid,
                    port,
                    tenant,
                    "/api/v1/events",
                    "post_event.lua",
                    args.connections,
                    f"ingest-{kind}",
                )
                note = error_note(result) + group_note(groups)
                if stored < result.requests - result.error_count:
                    note += f" only {stored} of {result.requests} events stored!"
                ratio = result.rate / baseline_rps
                p99 = result.latency_us["p99"] / 1000
                if "ingest" in args.scenarios:
                    results.add(
                        Row(
                            "ingest single event",
                            kind,
                            result.rate,
                            "req/s",
                            ratio=ratio,
                            p50_ms=result.latency_us["p50"] / 1000,
                            p99_ms=p99,
                            target="≥ 0.45x baseline, p99 ≤ 25 ms",
                            cpu_share=result.cpu_share,
                            cpu_us=result.cpu_us_per_request,
                            met=ratio >= 0.45 and p99 <= 25 and result.error_count == 0,
                            note=note.strip(),
                            details={
                                "connections": args.connections,
                                "requests": result.requests,
                                "events_stored": stored,
                                "warmup_events": warm - before,
                                "group_commits": groups,
                                "errors": result.errors,
                                "latency_us": result.latency_us,
                                "wrk_cpu_share": result.wrk_cpu_share,
                            },
                        )
                    )
                if "memory" in args.scenarios:
                    memory.add_under_load(results, kind, result)
            if "batch" in args.scenarios:
                batch.measure_batches(args, results, kind, db, api.pid, port, tenant, baseline_rps)
        finally:
            service.stop()
