"""Scale-out on PostgreSQL: N API processes and N workers, N = 1 then 2."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from harness import Results, Row, Service, fresh_database, provision

from scenarios.load import Sink, burst_ingest, subscribe


def run_scaleout(args: argparse.Namespace, results: Results, workdir: Path) -> None:
    """PostgreSQL, N API processes (dispatcher off) + N workers, N = 1 then 2: the same burst of
    events ingested across the API processes, delivered by the workers; the figure is the
    end-to-end rate (deliveries received by the sink / time from first ingest to last receipt).
    Process i of each kind runs on CPU i mod 2 (the sink and the sender on CPU 1)."""
    events = args.fanout_events
    expected = events * 2
    rates: dict[int, float] = {}
    for n in (1, 2):
        with fresh_database("postgres", workdir, args.postgres_url) as db:
            sink = Sink(workdir)
            service = Service(db, workdir)
            try:
                for i in range(n):
                    service.start_api(cpu=str(i % 2), EC_DISPATCHER_ENABLED="false")
                for i in range(n):
                    service.start_worker(cpu=str(i % 2))
                tenant = provision(service.env, service.base_url)
                subscribe(service.base_url, tenant, sink)
                start, end, failures = asyncio.run(
                    burst_ingest(service.api_ports, tenant, events, f"scale{n}")
                )
                stats = sink.wait_for(expected, timeout=args.fanout_timeout, prefix=f"scale{n}")
                lost, dup = expected - stats["unique"], stats["duplicates"]
                elapsed = (stats["last_at"] or time.time()) - start
                rates[n] = stats["unique"] / elapsed
                results.add(
                    Row(
                        f"scale-out {n} API + {n} worker: {events:,} events x 2 webhooks",
                        "postgres",
                        rates[n],
                        "deliveries/s",
                        ratio=(rates[n] / rates[1]) if n == 2 else None,
                        ratio_to="1 API + 1 worker",
                        target="no loss, no duplicate" + ("; ratio to 1+1" if n == 2 else ""),
                        met=lost == 0 and dup == 0,
                        note=f"ingest {events / (end - start):,.0f} events/s; undelivered {lost}, "
                        f"duplicates {dup}" + (f", {failures} failed batches" if failures else ""),
                        details={"ingest_s": end - start, "elapsed_s": elapsed, "sink": stats},
                    )
                )
            finally:
                service.stop()
                sink.stop()
