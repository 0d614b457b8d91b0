"""Memory: the API process's resident set, idle and under the single-event ingest load (measured
during the ingest scenario's run, on the same service)."""

from __future__ import annotations

from harness import Results, Row, WrkResult


def add_idle(results: Results, kind: str, idle_mb: float | None) -> None:
    results.add(
        Row(
            "memory: idle RSS",
            kind,
            idle_mb,
            "MB",
            target="≤ 150 MB",
            met=idle_mb is not None and idle_mb <= 150,
        )
    )


def add_under_load(results: Results, kind: str, result: WrkResult) -> None:
    results.add(
        Row(
            "memory: RSS under ingest load (max)",
            kind,
            result.rss_max_mb,
            "MB",
            target="reported",
        )
    )
