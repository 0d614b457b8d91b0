"""Event Collector benchmark harness: run it with ``./scripts/bench`` (``--help`` for options).

It starts the service itself on loopback as a user would (``event-collector serve`` with ``EC_*``
settings, on a fresh SQLite file or a fresh PostgreSQL database it creates and drops), pins the
server to CPU 0 and the load generator (wrk, this harness, the webhook sink) to CPU 1, and
measures, in the same run, a baseline: the bare Starlette route of ``bench/baseline_app.py``
under the same uvicorn settings, loaded with the same wrk script and connections. Every figure
is also reported as a ratio to that baseline. Results: a table on the terminal and
``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
SERVER_CPU = "0"
LOAD_CPU = "1"
SCENARIOS = ("ingest", "batch", "memory", "fanout", "scaleout")
PAYLOAD_B64 = "eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSIsImZpcnN0TmFtZSI6IkFkYSJ9"

# Wide enough for the table when the output is a file or a pipe (rich would use 80 columns).
console = Console() if sys.stdout.isatty() else Console(width=180)


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class Row:
    scenario: str
    db: str
    figure: float | None
    unit: str
    ratio: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    target: str = ""
    met: bool | None = None
    cpu_share: float | None = None  # of one core, by the server while loaded
    cpu_us: float | None = None  # server CPU time per request (or per event for batches)
    # baseline CPU µs per request / this row's: the throughput ratio both would have if each had
    # a whole core to itself (a shared, noisy machine steals CPU from them unevenly; this does
    # not hold for a server that waits rather than computes — see cpu_share).
    cpu_ratio: float | None = None
    note: str = ""
    ratio_to: str = "baseline"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    started_at: str
    machine: dict[str, Any]
    options: dict[str, Any]
    baseline: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        met = {True: "[green]met[/]", False: "[red]NOT met[/]", None: ""}[row.met]
        console.print(
            f"  [bold]{row.scenario}[/] ({row.db}): {_fmt(row.figure)} {row.unit}"
            + (f", {row.ratio:.2f}x {row.ratio_to}" if row.ratio is not None else "")
            + (f", p99 {row.p99_ms:.1f} ms" if row.p99_ms is not None else "")
            + (f"  {met}" if met else "")
            + (f"  [dim]{row.note}[/]" if row.note else "")
        )
        return row


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


# ---------------------------------------------------------------------------------------------
# machine and processes


def describe_machine(postgres_url: str | None) -> dict[str, Any]:
    cpu_model = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    machine = {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": None,
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else None,
        "load_average_at_start": os.getloadavg(),
        "server_cpu": SERVER_CPU,
        "load_generator_cpu": LOAD_CPU,
    }
    if postgres_url:
        with suppress(Exception):
            machine["postgres"] = asyncio.run(_pg_scalar(postgres_url, "SHOW server_version"))
    return machine


async def _pg_scalar(url: str, query: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A child process pinned to a CPU, with its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cpu: str, log_dir: Path
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            ["taskset", "-c", cpu, *argv],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()

    def tail(self, lines: int = 20) -> str:
        with suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def wait_http(url: str, process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer {url} within {timeout}s:\n{process.tail()}")


# ---------------------------------------------------------------------------------------------
# databases and the service


@dataclass
class Database:
    kind: str  # sqlite | postgres
    url: str
    admin_url: str | None = None
    name: str | None = None

    def count_events(self) -> int:
        if self.kind == "sqlite":
            path = self.url.split(":///", 1)[1]
            with sqlite3.connect(path) as conn:
                return int(conn.execute("SELECT count(*) FROM event").fetchone()[0])
        return int(asyncio.run(_pg_scalar(self.url, "SELECT count(*) FROM event")))


@contextmanager
def fresh_database(kind: str, workdir: Path, postgres_url: str) -> Iterator[Database]:
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        yield Database("sqlite", f"sqlite:///{path}")
        return
    name = f"ec_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_scalar(postgres_url, f'CREATE DATABASE "{name}"'))
    base = postgres_url.rsplit("/", 1)[0]
    try:
        yield Database("postgres", f"{base}/{name}", postgres_url, name)
    finally:
        with suppress(Exception):
            asyncio.run(_pg_scalar(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def service_env(db: Database, key_dir: Path, **extra: str) -> dict[str, str]:
    # The service's settings are ours alone; EC_BENCH_SERVER_* variables (experiments only, e.g.
    # EC_BENCH_SERVER_INGEST_GROUP_MAX_EVENTS=500) are passed on as EC_*.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env.update(
        {
            "EC_" + k.removeprefix("EC_BENCH_SERVER_"): v
            for k, v in os.environ.items()
            if k.startswith("EC_BENCH_SERVER_")
        }
    )
    env.update(
        EC_DATABASE_URL=db.url,
        EC_KEY_DIR=str(key_dir),
        EC_BOOTSTRAP_DEMO="false",
        EC_LOG_LEVEL="WARNING",
        EC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [str(BIN / "event-collector"), *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"event-collector {' '.join(args)} failed:\n{done.stderr}{done.stdout}")
    return json.loads(done.stdout) if "--json" in args else done.stdout


@dataclass
class Tenant:
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-TWC-Tenant": self.name}


def provision(env: dict[str, str], base_url: str) -> Tenant:
    """Create a tenant and a client with the CLI, then get a token as a client would."""
    name = "bench"
    cli(env, "tenant", "create", name, "--json")
    client = cli(env, "client", "create", name, "--name", "bench", "--json")
    response = httpx.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    response.raise_for_status()
    return Tenant(name, response.json()["access_token"])


class Service:
    """``event-collector serve`` (or ``worker``) processes on one database."""

    def __init__(self, db: Database, workdir: Path, **extra_env: str) -> None:
        self.db = db
        self.workdir = workdir
        self.key_dir = workdir / f"keys-{uuid.uuid4().hex[:6]}"
        self.env = service_env(db, self.key_dir, **extra_env)
        self.processes: list[Process] = []
        self.api_ports: list[int] = []
        if db.kind == "postgres":
            cli(self.env, "migrate")

    def start_api(self, cpu: str = SERVER_CPU, **extra_env: str) -> Process:
        port = free_port()
        name = f"serve-{self.db.kind}-{port}"
        process = Process(
            name,
            [str(BIN / "event-collector"), "serve", "--port", str(port)],
            {**self.env, **extra_env},
            cpu,
            self.workdir,
        )
        self.processes.append(process)
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        self.api_ports.append(port)
        return process

    def start_worker(self, cpu: str = SERVER_CPU) -> Process:
        name = f"worker-{self.db.kind}-{len(self.processes)}"
        process = Process(
            name, [str(BIN / "event-collector"), "worker"], self.env, cpu, self.workdir
        )
        self.processes.append(process)
        time.sleep(1.0)
        if process.popen.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{process.tail()}")
        return process

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_ports[0]}"

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def dispatcher_available() -> bool:
    done = subprocess.run(
        [str(BIN / "event-collector"), "worker", "--help"], capture_output=True, check=False
    )
    return done.returncode == 0


# ---------------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    rss_max_mb: float | None = None
    server_cpu_s: float | None = None
    wrk_cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s

    @property
    def cpu_share(self) -> float | None:
        """Share of one core the server used while loaded (1.0 = it was CPU-bound)."""
        return None if self.server_cpu_s is None else self.server_cpu_s / self.duration_s

    @property
    def wrk_cpu_share(self) -> float | None:
        return None if self.wrk_cpu_s is None else self.wrk_cpu_s / self.duration_s

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s / self.requests * 1e6

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_wrk(
    port: int,
    path: str,
    script: str,
    *,
    connections: int,
    duration: float,
    tenant: Tenant | None,
    extra_env: dict[str, str] | None = None,
    watch_pid: int | None = None,
) -> WrkResult:
    env = dict(os.environ)
    env["RUN"] = uuid.uuid4().hex[:10]
    if tenant is not None:
        env["TOKEN"], env["TENANT"] = tenant.token, tenant.name
    env.update(extra_env or {})
    argv = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / script),
        f"http://127.0.0.1:{port}{path}",
    ]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss_max = None
    cpu_before = cpu_seconds(watch_pid) if watch_pid is not None else None
    if watch_pid is not None:
        while wrk.poll() is None:
            value = rss_mb(watch_pid)
            if value is not None:
                rss_max = max(rss_max or 0.0, value)
            time.sleep(0.25)
    out, err = wrk.communicate()
    # wrk's own CPU time (is the load generator, rather than the server, the limit?): the only
    # child reaped since `children_before`.
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    cpu_after = cpu_seconds(watch_pid) if watch_pid is not None else None
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if wrk.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({wrk.returncode}):\n{out}\n{err}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        errors=data["errors"],
        latency_us=data["latency_us"],
        rss_max_mb=rss_max,
        server_cpu_s=(cpu_after - cpu_before) if cpu_before is not None and cpu_after else None,
        wrk_cpu_s=wrk_cpu,
    )


# ---------------------------------------------------------------------------------------------
# profiling (--profile): py-spy on the server while the measured wrk run goes on


@contextmanager
def profiled(args: argparse.Namespace, pid: int, label: str) -> Iterator[None]:
    """Record the server with ``py-spy record -f raw`` (on the load CPU) and print the
    functions it spends its samples in. py-spy is not a project dependency:
    ``.venv/bin/pip install py-spy``."""
    if not args.profile:
        yield
        return
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"profile-{label}-{int(time.time())}.txt"
    argv = ["taskset", "-c", LOAD_CPU, py_spy, "record", "-p", str(pid), "-f", "raw", "-r", "200"]
    argv += ["--nonblocking", "-o", str(out)]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            spy.wait(30)
        if out.exists():
            console.print(f"  profile: {out}")
            console.print(summarize_profile(out))


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive share of samples per function, from a py-spy raw (collapsed) file."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; self:"]
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {100 * count / total:5.1f}%  {name}")
    lines.append("  inclusive:")
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# scenarios: baseline, ingest, batch, memory


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


def run_ingest(
    args: argparse.Namespace, results: Results, kind: str, workdir: Path, baseline_rps: float
) -> None:
    with fresh_database(kind, workdir, args.postgres_url) as db:
        service = Service(db, workdir)
        try:
            api = service.start_api()
            tenant = provision(service.env, service.base_url)
            time.sleep(1.0)
            idle = rss_mb(api.pid)
            port = service.api_ports[0]
            if "memory" in args.scenarios:
                results.add(
                    Row(
                        "memory: idle RSS",
                        kind,
                        idle,
                        "MB",
                        target="≤ 150 MB",
                        met=idle is not None and idle <= 150,
                    )
                )
            if "ingest" in args.scenarios or "memory" in args.scenarios:
                before = db.count_events()
                warm, result, stored, groups = _warm_and_measure(
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
                note = _error_note(result) + _group_note(groups)
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
                    results.add(
                        Row(
                            "memory: RSS under ingest load (max)",
                            kind,
                            result.rss_max_mb,
                            "MB",
                            target="reported",
                        )
                    )
            if "batch" in args.scenarios:
                _, result, stored, groups = _warm_and_measure(
                    args,
                    db,
                    api.pid,
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
                        note=(_error_note(result) + _group_note(groups)).strip(),
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
        finally:
            service.stop()


_GROUP_METRICS = (
    "ec_ingest_group_events_sum",
    "ec_ingest_group_events_count",
    "ec_ingest_group_seconds_sum",
)


def _warm_and_measure(
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
            if name in _GROUP_METRICS:
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


def _group_note(stats: dict[str, Any]) -> str:
    if not stats:
        return ""
    note = f" groups: {stats['groups_per_s']:,.0f}/s of {stats['mean_group_events']:.1f} events"
    if "mean_group_ms" in stats:
        note += f", {stats['mean_group_ms']:.1f} ms each"
    return note


def _error_note(result: WrkResult) -> str:
    errors = {k: v for k, v in result.errors.items() if v}
    return f" errors: {errors}" if errors else ""


# ---------------------------------------------------------------------------------------------
# fan-out and scale-out (need the delivery dispatcher)


def order_event(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "entity_id": f"o-{event_id}",
        "event_type": "ORDER",
        "event_source": "CONNECTOR",
        "event_payload": {
            "operation": "CREATE",
            "key_attributes": {"correlationId": event_id},
            "base64_encoded_payload_json": PAYLOAD_B64,
        },
    }


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client over asyncio streams: cheap enough to pace 2k
    requests/s from one core (httpx is not)."""

    def __init__(self, port: int, tenant: Tenant) -> None:
        self.port = port
        self.tenant = tenant
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> RawHttp:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def encode(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.tenant.token}\r\nX-TWC-Tenant: {self.tenant.name}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def post(self, path: str, body: bytes) -> int:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(self.encode(path, body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with suppress(Exception):
                await self.writer.wait_closed()


async def burst_ingest(
    ports: list[int], tenant: Tenant, count: int, prefix: str, connections_per_port: int = 4
) -> tuple[float, float, int]:
    """POST ``count`` events as batches of 500 as fast as the API takes them.
    Returns (start, end) wall-clock times and the number of non-200 answers."""
    batches = [
        json.dumps(
            [order_event(f"{prefix}-{i}") for i in range(start, min(count, start + 500))]
        ).encode()
        for start in range(0, count, 500)
    ]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    failures = 0

    async def sender(port: int) -> None:
        nonlocal failures
        conn = await RawHttp(port, tenant).open()
        try:
            while not queue.empty():
                batch = queue.get_nowait()
                if await conn.post("/api/v1/events/batch", batch) != 200:
                    failures += 1
        finally:
            await conn.close()

    start = time.time()
    await asyncio.gather(*(sender(p) for p in ports for _ in range(connections_per_port)))
    return start, time.time(), failures


async def paced_ingest(
    port: int, tenant: Tenant, rate: float, count: int, prefix: str, connections: int = 32
) -> tuple[float, float, int]:
    """POST ``count`` single events at a steady ``rate`` per second (open loop as long as a
    connection is free). Returns (start, end, failures)."""
    pool: asyncio.Queue[RawHttp] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await RawHttp(port, tenant).open())
    failures = 0
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def send(conn: RawHttp, body: bytes) -> None:
        nonlocal failures
        try:
            if await conn.post("/api/v1/events", body) != 201:
                failures += 1
        finally:
            pool.put_nowait(conn)

    start_wall, t0 = time.time(), loop.time()
    for i in range(count):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await pool.get()
        task = asyncio.create_task(send(conn, json.dumps(order_event(f"{prefix}-{i}")).encode()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    end_wall = time.time()
    while not pool.empty():
        await pool.get_nowait().close()
    return start_wall, end_wall, failures


class Sink:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = Process(
            f"sink-{self.port}",
            [
                str(BIN / "python"),
                "-m",
                "uvicorn",
                "--app-dir",
                str(BENCH),
                "sink:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--backlog",
                "4096",
            ],
            dict(os.environ),
            LOAD_CPU,
            workdir,
        )
        wait_http(f"http://127.0.0.1:{self.port}/stats", self.process)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        params = {"prefix": prefix} if prefix else None
        url = f"http://127.0.0.1:{self.port}/stats"
        return dict(httpx.get(url, params=params, timeout=10).json())

    def reset(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/reset", timeout=10)

    def wait_for(
        self, expected: int, timeout: float, prefix: str, stall: float = 30
    ) -> dict[str, Any]:
        """Poll until ``expected`` distinct deliveries arrived, nothing arrived for ``stall``
        seconds, or ``timeout``; then wait a little more to catch duplicates. Deliveries still
        missing then are reported as "undelivered" (lost, or only slow: see --fanout-timeout)."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            stats = self.stats(prefix)
            if stats["unique"] >= expected:
                time.sleep(1.0)
                return self.stats(prefix)
            if stats["unique"] != last_count:
                last_count, last_change = stats["unique"], time.monotonic()
            elif time.monotonic() - last_change > stall:
                break
            time.sleep(0.05)
        return self.stats(prefix)

    def stop(self) -> None:
        self.process.stop()


def subscribe(base_url: str, tenant: Tenant, sink: Sink, count: int = 2) -> None:
    for _ in range(count):
        response = httpx.post(
            f"{base_url}/api/v1/event-subscription",
            headers=tenant.headers,
            json={
                "entityType": "ORDER",
                "destination": {"type": "WEBHOOK", "webhook": {"url": sink.url}},
            },
        )
        if response.status_code != 201:
            raise RuntimeError(
                f"creating a subscription failed: {response.status_code} {response.text}"
            )


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


# ---------------------------------------------------------------------------------------------
# main


def print_table(results: Results) -> None:
    b = results.baseline
    table = Table(
        title=f"Event Collector benchmark — baseline (bare Starlette route): {_fmt(b.get('rps'))} "
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
        figure = f"{_fmt(row.figure, 2 if row.unit in ('s',) else 0)} {row.unit}"
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
            f"| {scenario} | {row['db']} | {_fmt(row['figure'], digits)} {row['unit']} | "
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
