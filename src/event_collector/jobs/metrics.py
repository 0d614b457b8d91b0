"""Job metrics (labels never carry tenants or job ids)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

runs = Counter(
    "ec_job_runs_total",
    "Finished job runs by notification type and outcome (succeeded, failed)",
    ["notification", "outcome"],
)
run_duration = Histogram(
    "ec_job_run_seconds",
    "How long a job run took, by notification type",
    ["notification"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
scheduler_lag = Histogram(
    "ec_job_scheduler_lag_seconds",
    "Start of a scheduled run minus the occurrence it is for",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 3600),
)
occurrences = Counter(
    "ec_job_occurrences_total",
    "Due occurrences by what the scheduler did: fired (one run each), coalesced (folded into "
    "the run of a later occurrence after downtime), skipped (missed, with "
    "EC_SCHEDULER_MISSED_RUNS=skip)",
    ["action"],
)
