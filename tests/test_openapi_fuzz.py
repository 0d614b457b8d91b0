"""Schemathesis over every operation of our OpenAPI document, against a real server process on
each database, authenticated, with every check it has: no 5xx, and the document tells the truth
(schema-valid requests accepted, schema-violating ones refused, answers as documented, Allow
headers, links from each create to the operations on what it created).

The run is the schemathesis command line (its engine: examples, coverage, fuzzing and stateful
phases), so the figures are those its report gives. Reproduce by hand against a running server:

    schemathesis run http://127.0.0.1:8000/openapi.json --checks all -n 40 \\
        -H "Authorization: Bearer $TOKEN" -H "X-TWC-Tenant: $TENANT"
(with SCHEMATHESIS_HOOKS=tests.openapi_fuzz_hooks, see that module)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import _create_postgres_database, _drop_postgres_database
from tests.test_serve import _free_port

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Cases per operation and phase; the totals are asserted below from the report.
EXAMPLES = {"sqlite": 40, "postgres": 12}
MINIMUM_CASES = {"sqlite": 1000, "postgres": 300}


@dataclass
class LiveServer:
    base_url: str
    token: str
    tenant: str


def _server_env(directory: Path, database_url: str | None) -> dict[str, str]:
    # No AWS credentials nor metadata lookups: a fuzzed SQS/SNS test send fails fast, offline.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EC_", "AWS_", "SCHEMATHESIS"))}
    env.update(
        EC_BOOTSTRAP_DEMO="false",
        EC_KEY_DIR=str(directory / "keys"),
        EC_AUTO_MIGRATE="true",
        # Nothing generated is sent anywhere in the background.
        EC_DISPATCHER_ENABLED="false",
        EC_SCHEDULER_ENABLED="false",
        AWS_EC2_METADATA_DISABLED="true",
        # The document cannot know the operator's allow-list: let every destination use the
        # server's credentials (refusals are tested in tests/hardening).
        EC_AWS_SERVER_CREDENTIALS_ALLOW="*",
    )
    if database_url:
        env["EC_DATABASE_URL"] = database_url
    return env


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, LiveServer]]:
    backend = str(request.param)
    directory = tmp_path_factory.mktemp(f"fuzz-{backend}")
    database_url = None
    if backend == "postgres":
        database_url = asyncio.run(_create_postgres_database())
    env = _server_env(directory, database_url)

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "event_collector", *args],
            cwd=directory,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    cli("migrate")
    cli("tenant", "create", "fuzz")
    client = json.loads(cli("client", "create", "fuzz", "--json"))
    port = _free_port()
    env["EC_PORT"] = str(port)
    server = subprocess.Popen(
        [sys.executable, "-m", "event_collector", "serve"],
        cwd=directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        token = httpx.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
            },
        ).json()["access_token"]
        yield backend, LiveServer(base, token, "fuzz")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if database_url:
            asyncio.run(_drop_postgres_database(database_url))


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        # Between polls of its port, wait on the process itself (it may exit).
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=0.2)
    raise AssertionError("the server did not become ready")


def test_every_operation_conforms_to_the_document(
    live_server: tuple[str, LiveServer],
    tmp_path: Path,
) -> None:
    backend, server = live_server
    report = tmp_path / "schemathesis.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS")}
    env.update(SCHEMATHESIS_HOOKS="tests.openapi_fuzz_hooks", PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.base_url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES[backend]),
            "--seed",
            "20261130",
            "--no-shrink",
            "--workers",
            "1",
            "--header",
            f"Authorization: Bearer {server.token}",
            "--header",
            f"X-TWC-Tenant: {server.tenant}",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        cwd=tmp_path,  # its cache directory stays out of the repository
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]["generated"]
    # The figures (shown with -o log_cli=true, and with any failure).
    logger.info(
        "[%s] schemathesis %s: %d cases over %d operations, checks: all, failures: %s",
        backend,
        summary["schemathesis_version"],
        cases,
        summary["operations"]["tested"],
        summary["failures"],
    )
    assert run.returncode == 0, run.stdout[-6000:]
    assert summary["failures"] == [], summary
    assert summary["errors"] == [], summary
    assert summary["operations"]["tested"] == summary["operations"]["total"]
    assert cases >= MINIMUM_CASES[backend], summary["test_cases"]
    # The links take a stateful run past 404 to every operation on a created resource.
    # PostgreSQL's shorter run (a third of the cases) does not always walk the longest chain
    # (create job -> run -> its run), so reachability is asserted on the full run only.
    unreached = set(summary["warnings"].get("missing_test_data", []))
    if backend == "postgres":
        unreached.discard("GET /api/v1/jobs/{job_id}/runs/{run_id}")
    assert not {op for op in unreached if "subscription" in op or "/jobs/" in op}, unreached
