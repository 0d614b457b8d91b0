"""Schema-driven fuzzing (schemathesis) of every operation in our OpenAPI document, against a
real server process: whatever is generated, the answer is never a 5xx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_serve import _free_port, _start_server

STATUS_SEEN: Counter[int] = Counter()


@dataclass
class LiveServer:
    base_url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env["EC_BOOTSTRAP_DEMO"] = "false"

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "event_collector", *args],
            cwd=directory,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    cli("tenant", "create", "fuzz")
    client = json.loads(cli("client", "create", "fuzz", "--json"))
    port = _free_port()
    server = _start_server(directory, port, bootstrap_demo=False)
    base = f"http://127.0.0.1:{port}"
    import httpx

    token = httpx.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    ).json()["access_token"]
    yield LiveServer(base, {"Authorization": f"Bearer {token}", "X-TWC-Tenant": "fuzz"})
    server.send_signal(signal.SIGINT)
    server.communicate(timeout=30)


@pytest.fixture(scope="module")
def operations(live_server: LiveServer) -> list[Any]:
    api_schema = schemathesis.openapi.from_url(f"{live_server.base_url}/openapi.json")
    return [result.ok() for result in api_schema.get_all_operations()]


def test_the_document_covers_the_api(operations: list[Any]) -> None:
    paths = {(op.method.upper(), op.path) for op in operations}
    assert ("POST", "/api/v1/events") in paths
    assert ("POST", "/api/v1/events/batch") in paths
    assert ("PUT", "/api/v1/event-subscription/{subscription_id}") in paths


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_operation_answers_a_server_error(
    data: st.DataObject, operations: list[Any], live_server: LiveServer
) -> None:
    operation = data.draw(st.sampled_from(operations), label="operation")
    case = data.draw(operation.as_strategy(), label="case")
    headers = {**(case.headers or {}), **live_server.headers}
    response = case.call(base_url=live_server.base_url, headers=headers)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    STATUS_SEEN[response.status_code] += 1


def test_the_fuzzing_reached_past_authentication() -> None:
    # Runs after the fuzz test (file order): most cases must have been judged on their content.
    judged = sum(n for status, n in STATUS_SEEN.items() if status not in (401, 403))
    assert judged > sum(STATUS_SEEN.values()) / 2, STATUS_SEEN
