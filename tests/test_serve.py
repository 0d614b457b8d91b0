"""The first-start experience of the README, end to end: `event-collector serve` as a user runs
it (a subprocess on the embedded SQLite default), then the printed curl sequence, over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.factories import event_body


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(
    directory: Path, port: int, *, bootstrap_demo: bool = True
) -> subprocess.Popen[str]:
    """`event-collector serve` in ``directory`` with no other EC_* settings, once it is ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env["EC_PORT"] = str(port)
    env["EC_BOOTSTRAP_DEMO"] = str(bootstrap_demo).lower()
    server = subprocess.Popen(
        [sys.executable, "-m", "event_collector", "serve"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError(f"the server did not become ready: {server.communicate()[0]}")


def test_first_start_prints_working_demo_credentials(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    try:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
        client_id = re.search(r"client_id:\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        secret = re.search(r"client_secret:\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        assert f"export API={base}" in output
        assert (tmp_path / "event-collector.db").exists()

        # Second start: the demo tenant exists, so nothing is printed again; the credentials work.
        server = _start_server(tmp_path, port)
        token = httpx.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "X-TWC-Tenant": "demo"}
        body = event_body()
        assert httpx.post(f"{base}/api/v1/events", json=body, headers=headers).status_code == 201
        fetched = httpx.get(f"{base}/api/v1/events/{body['id']}", headers=headers)
        assert fetched.json()["id"] == body["id"]
        server.send_signal(signal.SIGINT)
        second_output, _ = server.communicate(timeout=30)
        assert "client_secret" not in second_output
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
