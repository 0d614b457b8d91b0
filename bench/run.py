"""Event Collector benchmark harness: run it with ``./scripts/bench`` (``--help`` for options).

It starts the service itself on loopback as a user would (``event-collector serve`` with ``EC_*``
settings, on a fresh SQLite file or a fresh PostgreSQL database it creates and drops), pins the
server to CPU 0 and the load generator (wrk, this harness, the webhook sink) to CPU 1, and
measures, in the same run, a baseline: the bare Starlette route of ``bench/baseline_app.py``
under the same uvicorn settings, loaded with the same wrk script and connections. Every figure
is also reported as a ratio to that baseline. Results: a table on the terminal and
``bench/results/<timestamp>.json``.

This module is the runner (options, the order of the scenarios, the table); what the scenarios
share is in ``harness.py`` and each scenario is a module of ``scenarios/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from contextlib import suppress
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    LOAD_CPU,
    ROOT,
    SERVER_CPU,
    Results,
    Row,
    console,
    describe_machine,
    dispatcher_available,
    fmt_number,
)
from rich.table import Table
from scenarios.baseline import run_baseline
from scenarios.fanout import run_fanout
from scenarios.ingest import run_ingest
from scenarios.scaleout import run_scaleout

SCENARIOS = ("ingest", "batch", "memory", "fanout", "scaleout")


def print_table(results: Results) -> None:
    b = results.baseline
    table = Table(
        title="Event Collector benchmark — baseline (bare Starlette route): "
        f"{fmt_number(b.get('rps'))} "
        f"req/s, p99 {b.get('p99_ms', 0):.1f} ms, server CPU {100 * (b.get('cpu_share') or 0):.0f} "
        f"%, {b.get('cpu_us_per_request') or 0:.0f} CPU µs/req",
        caption=f"{results.machine['cpu_model']}, {results.machine['cores']} cores, "
        f"{results.machine['memory_gib']} GiB; Python {results.machine['python']}, SQLite "
        f"{results.machine['sqlite']}, PostgreSQL {results.machine['postgres']}; server on CPU "
        f"{SERVER_CPU}, load on CPU {LOAD_CPU}",
    )
    columns = (
        "scenario",
        "db",
        "figure",
        "x baseline",
        "CPU-cost ratio",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "CPU µs/req",
        "target",
        "met",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("scenario", "db", "target") else "right"
        )
    for row in results.rows:
        figure = f"{fmt_number(row.figure, 2 if row.unit in ('s',) else 0)} {row.unit}"
        table.add_row(
            row.scenario + (f"\n[dim]{row.note}[/]" if row.note else ""),
            row.db,
            figure,
            ""
            if row.ratio is None
            else f"{row.ratio:.2f}"
            + ("" if row.ratio_to == "baseline" else f" (x {row.ratio_to})"),
            f"{row.cpu_ratio:.2f}" if row.cpu_ratio is not None else "",
            f"{row.p50_ms:.1f}" if row.p50_ms is not None else "",
            f"{row.p99_ms:.1f}" if row.p99_ms is not None else "",
            f"{100 * row.cpu_share:.0f} %" if row.cpu_share is not None else "",
            f"{row.cpu_us:.0f}" if row.cpu_us is not None else "",
            row.target,
            {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[row.met],
        )
    console.print(table)


def markdown(path: Path) -> str:
    """A results file as a Markdown table (for the README)."""
    data = json.loads(path.read_text())
    m, b = data["machine"], data["baseline"]
    lines = [
        f"Run of {data['started_at']} on {m['cpu_model']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB (load average {m['load_average_at_start'][0]:.1f} at start); "
        f"Python {m['python']}, SQLite {m['sqlite']}, PostgreSQL {m['postgres']}. Baseline (bare "
        f"Starlette route): {b['rps']:,.0f} req/s (runs: "
        + ", ".join(f"{r['rps']:,.0f}" for r in b.get("runs", []))
        + f"), p99 {b['p99_ms']:.1f} ms, {b.get('cpu_us_per_request') or 0:.0f} server CPU µs per "
        "request.",
        "",
        "| scenario | db | figure | x baseline | CPU-cost ratio | p50 ms | p99 ms | server CPU "
        "| CPU µs/req | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in data["rows"]:
        digits = 2 if row["unit"] == "s" else 0
        ratio = row["ratio"]
        scenario = row["scenario"] + (f"<br>{row['note']}" if row["note"] else "")
        lines.append(
            f"| {scenario} | {row['db']} | {fmt_number(row['figure'], digits)} {row['unit']} | "
            + ("" if ratio is None else f"{ratio:.2f}")
            + (
                ""
                if ratio is None or row.get("ratio_to", "baseline") == "baseline"
                else f" (x {row['ratio_to']})"
            )
            + " | "
            + ("" if row.get("cpu_ratio") is None else f"{row['cpu_ratio']:.2f}")
            + " | "
            + " | ".join(
                "" if row[key] is None else f"{row[key]:.1f}" for key in ("p50_ms", "p99_ms")
            )
            + " | "
            + ("" if row["cpu_share"] is None else f"{100 * row['cpu_share']:.0f} %")
            + " | "
            + ("" if row["cpu_us"] is None else f"{row['cpu_us']:.0f}")
            + f" | {row['target']} | "
            + {True: "yes", False: "**no**", None: ""}[row["met"]]
            + " |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark Event Collector against a bare Starlette baseline (see README).",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per run (3)")
    parser.add_argument("--connections", type=int, default=64, help="single-event connections")
    parser.add_argument("--batch-connections", type=int, default=8, help="batch connections")
    parser.add_argument("--fanout-events", type=int, default=20_000)
    parser.add_argument("--fanout-timeout", type=float, default=180)
    parser.add_argument("--steady-rate", type=float, default=2000, help="events/s")
    parser.add_argument("--steady-seconds", type=float, default=10)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "EC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="server where a fresh database is created and dropped (EC_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--output", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="RESULTS_JSON",
        help="print a results file as a Markdown table and exit",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the server with py-spy during the ingest runs (pip install py-spy)",
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def guarded(results: Results, name: str, db: str, scenario: Any, *args: Any) -> None:
    """Run one scenario; if it fails, record why and go on with the others."""
    try:
        scenario(*args)
    except Exception as exc:
        console.print_exception(max_frames=3)
        results.add(Row(name, db, None, "", note=f"failed: {exc}".splitlines()[0][:200]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown(args.markdown) + "\n")
        return 0
    with suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # this harness is load too: keep it off CPU 0
    if not shutil.which("wrk") or not shutil.which("taskset"):
        console.print("[red]wrk and taskset are needed (./scripts/bench installs wrk)[/]")
        return 2
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    uses_pg = "postgres" in dbs or "scaleout" in args.scenarios
    results = Results(
        started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        machine=describe_machine(args.postgres_url if uses_pg else None),
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )
    m = results.machine
    console.print(
        f"[bold]machine[/]: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Python {m['python']}, SQLite {m['sqlite']}, PostgreSQL {m['postgres']}, "
        f"load average {m['load_average_at_start'][0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="ec-bench-") as tmp:
        workdir = Path(tmp)
        try:
            console.print("[bold]baseline[/]: bare Starlette route, same uvicorn settings")
            first = run_baseline(args, workdir)
            console.print(
                f"  {first['rps']:,.0f} req/s, p99 {first['p99_ms']:.1f} ms, server CPU "
                f"{100 * (first['cpu_share'] or 0):.0f} %, "
                f"wrk CPU {100 * first['wrk_cpu_share']:.0f} %"
            )
            results.baseline = {"runs": [first], **first}
            if {"ingest", "batch", "memory"} & set(args.scenarios):
                for kind in dbs:
                    console.print(f"[bold]ingest[/] on {kind}")
                    guarded(
                        results,
                        "ingest",
                        kind,
                        run_ingest,
                        args,
                        results,
                        kind,
                        workdir,
                        results.baseline["rps"],
                    )
                # Measured again after the ingest scenarios: the machine is shared, and the
                # drift between the two says how far to trust the ratios.
                second = run_baseline(args, workdir)
                console.print(f"  baseline again: {second['rps']:,.0f} req/s")
                runs = [first, second]
                results.baseline = {
                    "runs": runs,
                    "rps": sum(r["rps"] for r in runs) / 2,
                    "p50_ms": sum(r["p50_ms"] for r in runs) / 2,
                    "p99_ms": sum(r["p99_ms"] for r in runs) / 2,
                    "cpu_share": sum(r["cpu_share"] or 0 for r in runs) / 2,
                    "cpu_us_per_request": sum(r["cpu_us_per_request"] or 0 for r in runs) / 2,
                }
                # Ratios against the mean of both baseline runs.
                for row in results.rows:
                    if row.cpu_us and results.baseline["cpu_us_per_request"]:
                        row.cpu_ratio = results.baseline["cpu_us_per_request"] / row.cpu_us
                    if (
                        row.ratio is not None
                        and row.figure is not None
                        and row.ratio_to == "baseline"
                    ):
                        row.ratio = row.figure / results.baseline["rps"]
                        if row.scenario == "ingest single event":
                            row.met = (
                                row.ratio >= 0.45
                                and (row.p99_ms or 0) <= 25
                                and not sum(row.details["errors"].values())
                            )
            wants_delivery = {"fanout", "scaleout"} & set(args.scenarios)
            if wants_delivery and not dispatcher_available():
                for name in sorted(wants_delivery):
                    results.add(
                        Row(
                            name,
                            "-",
                            None,
                            "",
                            note="skipped: dispatcher not available "
                            "(`event-collector worker --help` failed)",
                        )
                    )
            elif wants_delivery:
                if "fanout" in args.scenarios:
                    for kind in dbs:
                        console.print(f"[bold]fan-out[/] on {kind}")
                        guarded(results, "fanout", kind, run_fanout, args, results, kind, workdir)
                if "scaleout" in args.scenarios:
                    console.print("[bold]scale-out[/] on postgres")
                    guarded(results, "scaleout", "postgres", run_scaleout, args, results, workdir)
        finally:
            args.output.mkdir(parents=True, exist_ok=True)
            stamp = results.started_at.replace(":", "").replace("-", "")
            path = args.output / f"{stamp}.json"
            document = asdict(results)
            path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print_table(results)
    console.print(
        f"results written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
