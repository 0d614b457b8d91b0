"""Real processes for the hardening tests: a PostgreSQL cluster the test owns (to stop, kill or
freeze), an `event-collector serve` process, and a load of concurrent ingest clients that
records every answer."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from event_collector.auth import service as auth_service
from event_collector.kit import migrate
from event_collector.kit.db import Database
from tests.factories import event_body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PostgresCluster:
    """A PostgreSQL server of our own on a free port (initdb + pg_ctl from the installed server).

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user."""

    def __init__(self, root: Path) -> None:
        bindir = _postgres_bin()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.port = free_port()
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            root.mkdir(parents=True, exist_ok=True)
            os.chown(root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bindir / tool), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c max_connections=100"
        )
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self, mode: str) -> None:
        """``fast`` (clients disconnected, clean shutdown) or ``immediate`` (a crash)."""
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def _processes(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> list[int]:
        """SIGSTOP the server and all its processes: a host that stopped answering."""
        frozen = self._processes()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        return frozen

    def thaw(self, frozen: list[int]) -> None:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.thaw(self._processes())
                self.stop("immediate")
            except (RuntimeError, OSError, ValueError):
                pass


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # the postgres user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="ec-pg-"))
    server = PostgresCluster(root)
    try:
        server.start()
        yield server
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


class Service:
    """`event-collector serve` as a separate process."""

    def __init__(self, database_url: str, key_dir: Path, log: Path, **settings: str) -> None:
        self.log = log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
        self.env.update(
            EC_DATABASE_URL=database_url,
            EC_KEY_DIR=str(key_dir),
            EC_PORT=str(self.port),
            EC_BOOTSTRAP_DEMO="false",
            EC_AUTO_MIGRATE="false",
            EC_LOG_LEVEL="WARNING",
            **settings,
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "event_collector", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "serve exited"
            try:
                if httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not become ready")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


async def provision(db: Database, tenant: str) -> dict[str, str]:
    """Migrate the database and create ``tenant`` with a client; the client's token form."""
    await migrate.upgrade(db)
    async with db.write() as conn:
        await auth_service.create_tenant(conn, tenant)
        issued = await auth_service.create_client(conn, tenant)
    return {
        "grant_type": "client_credentials",
        "client_id": issued.client_id,
        "client_secret": issued.client_secret,
    }


async def bearer_headers(base: str, form: dict[str, str], tenant: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base) as http:
        token = (await http.post("/oauth/token", data=form)).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "X-TWC-Tenant": tenant}


@dataclass
class Answer:
    what: str
    status: int
    seconds: float
    retry_after: str | None
    body: Any


@dataclass
class Load:
    """Concurrent clients posting single events and batches (and, with ``readers``, listing
    events and fetching tokens) until stopped; every answer and every acknowledged id kept."""

    base: str
    headers: dict[str, str]
    token_form: dict[str, str]
    event_type: str = "ORDER"
    batch_size: int = 5
    answers: list[Answer] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    stopping: bool = False

    async def _call(
        self, http: httpx.AsyncClient, what: str, request: Any
    ) -> httpx.Response | None:
        """Send, and record the answer; None (recorded as status 0) when there was none (the
        server died)."""
        started = time.monotonic()
        try:
            response: httpx.Response = await request
        except httpx.TransportError:
            self.answers.append(Answer(what, 0, time.monotonic() - started, None, None))
            return None
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = response.text
        self.answers.append(
            Answer(
                what,
                response.status_code,
                time.monotonic() - started,
                response.headers.get("retry-after"),
                body,
            )
        )
        return response

    async def _ingest(self, http: httpx.AsyncClient, batch: bool) -> None:
        while not self.stopping:
            if batch:
                events = [event_body(event_type=self.event_type) for _ in range(self.batch_size)]
                response = await self._call(
                    http, "batch", http.post("/api/v1/events/batch", json=events)
                )
                if response is not None and response.status_code == 200:
                    self.acknowledged.update(
                        item["id"]
                        for item in response.json()["results"]
                        if item["status"] in ("created", "duplicate")
                    )
            else:
                event = event_body(event_type=self.event_type)
                response = await self._call(http, "single", http.post("/api/v1/events", json=event))
                if response is not None and response.status_code in (200, 201):
                    self.acknowledged.add(event["id"])
            if response is None or response.status_code == 503:
                await asyncio.sleep(0.05)  # a client honouring Retry-After would wait longer

    async def _read(self, http: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
        while not self.stopping:
            await self._call(http, "list", http.get("/api/v1/events", params={"limit": 5}))
            await self._call(http, "token", anonymous.post("/oauth/token", data=self.token_form))
            await self._call(http, "subscriptions", http.get("/api/v1/event-subscription"))
            await self._call(http, "readyz", http.get("/readyz"))
            await asyncio.sleep(0.02)

    async def run(self, singles: int = 4, batches: int = 2, readers: int = 1) -> None:
        async with (
            httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=60) as http,
            httpx.AsyncClient(base_url=self.base, timeout=60) as anonymous,
        ):
            await asyncio.gather(
                *(self._ingest(http, batch=False) for _ in range(singles)),
                *(self._ingest(http, batch=True) for _ in range(batches)),
                *(self._read(http, anonymous) for _ in range(readers)),
            )

    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)

    def since(self, count: int) -> list[Answer]:
        return self.answers[count:]
