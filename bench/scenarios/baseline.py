"""The baseline: the bare Starlette route of ``bench/baseline_app.py`` under the same uvicorn
settings and wrk script as the service."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from harness import BENCH, BIN, SERVER_CPU, Process, free_port, run_wrk, wait_http


def run_baseline(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = free_port()
    process = Process(
        f"baseline-{port}",
        [
            str(BIN / "python"),
            "-m",
            "uvicorn",
            "--app-dir",
            str(BENCH),
            "baseline_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--no-server-header",
            "--log-level",
            "warning",
        ],
        dict(os.environ),
        SERVER_CPU,
        workdir,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v1/events", process)
        run_wrk(
            port,
            "/api/v1/events",
            "post_event.lua",
            connections=args.connections,
            duration=args.warmup,
            tenant=None,
        )
        result = run_wrk(
            port,
            "/api/v1/events",
            "post_event.lua",
            connections=args.connections,
            duration=args.duration,
            tenant=None,
            watch_pid=process.pid,
        )
    finally:
        process.stop()
    return {
        "cpu_share": result.cpu_share,
        "wrk_cpu_share": result.wrk_cpu_share,
        "cpu_us_per_request": result.cpu_us_per_request,
        "rps": result.rate,
        "p50_ms": result.latency_us["p50"] / 1000,
        "p99_ms": result.latency_us["p99"] / 1000,
        "errors": result.errors,
    }
