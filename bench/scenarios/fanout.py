"""Fan-out: events ingested in a burst and at a steady rate, each delivered to two webhooks
(needs the delivery dispatcher)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from harness import Results, Row, Service, fresh_database, provision

from scenarios.load import Sink, burst_ingest, paced_ingest, subscribe


def run_fanout(args: argparse.Namespace, results: Results, kind: str, workdir: Path) -> None:
    events = args.fanout_events
    expected = events * 2
    with fresh_database(kind, workdir, args.postgres_url) as db:
        sink = Sink(workdir)
        service = Service(db, workdir)
        try:
            service.start_api()
            tenant = provision(service.env, service.base_url)
            subscribe(service.base_url, tenant, sink)
            port = service.api_ports[0]

            # 1. A burst of events, ingested as fast as the API takes them (batches of 500).
            start, end, failures = asyncio.run(burst_ingest([port], tenant, events, "burst"))
            stats = sink.wait_for(expected, timeout=args.fanout_timeout, prefix="burst")
            drain = (stats["last_at"] - end) if stats["last_at"] else None
            lost, dup = expected - stats["unique"], stats["duplicates"]
            rate = stats["unique"] / (stats["last_at"] - start) if stats["last_at"] else 0.0
            results.add(
                Row(
                    f"fan-out burst: {events:,} events x 2 webhooks, drain after last ingest",
                    kind,
                    drain,
                    "s",
                    p50_ms=stats["latency_ms"]["p50"],
                    p99_ms=stats["latency_ms"]["p99"],
                    target="all delivered ≤ 5 s after last ingest",
                    met=lost == 0 and dup == 0 and drain is not None and drain <= 5,
                    note=f"ingest {events / (end - start):,.0f} events/s; "
                    f"{rate:,.0f} deliveries/s; undelivered {lost}, duplicates {dup}"
                    + (f", {failures} failed batches" if failures else ""),
                    details={"ingest_s": end - start, "sink": stats, "failed_batches": failures},
                )
            )

            # 2. A steady rate of single events; end-to-end latency stored → received by sink.
            sink.reset()
            count = int(args.steady_rate * args.steady_seconds)
            start, end, failures = asyncio.run(
                paced_ingest(port, tenant, args.steady_rate, count, "steady")
            )
            stats = sink.wait_for(count * 2, timeout=args.fanout_timeout, prefix="steady")
            lost, dup = count * 2 - stats["unique"], stats["duplicates"]
            p99 = stats["latency_ms"]["p99"]
            results.add(
                Row(
                    f"fan-out steady {args.steady_rate:,.0f} events/s x 2 webhooks, end-to-end",
                    kind,
                    p99,
                    "ms p99",
                    p50_ms=stats["latency_ms"]["p50"],
                    p99_ms=p99,
                    target="p99 ≤ 200 ms",
                    met=lost == 0 and dup == 0 and p99 is not None and p99 <= 200,
                    note=f"sent {count / (end - start):,.0f} events/s; undelivered {lost}, "
                    f"duplicates {dup}" + (f", {failures} failed posts" if failures else ""),
                    details={"send_s": end - start, "sink": stats, "failed_posts": failures},
                )
            )
        finally:
            service.stop()
            sink.stop()
