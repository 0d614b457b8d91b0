"""What every scenario uses: the results table, the machine's description, the processes
(the service, pinned to a CPU), fresh databases, wrk runs and profiling."""

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
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
SERVER_CPU = "0"
LOAD_CPU = "1"
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
            f"  [bold]{row.scenario}[/] ({row.db}): {fmt_number(row.figure)} {row.unit}"
            + (f", {row.ratio:.2f}x {row.ratio_to}" if row.ratio is not None else "")
            + (f", p99 {row.p99_ms:.1f} ms" if row.p99_ms is not None else "")
            + (f"  {met}" if met else "")
            + (f"  [dim]{row.note}[/]" if row.note else "")
        )
        return row


def fmt_number(value: float | None, digits: int = 0) -> str:
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


def provision(env: dict[str, str], base_url: str, name: str = "bench") -> Tenant:
    """Create a tenant and a client with the CLI, then get a token as a client would."""
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
