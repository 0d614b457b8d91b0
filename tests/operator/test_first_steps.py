"""First steps that paste (issue 13 item 2): the first start's export lines followed by the
README's "Using the API" block work in bash as they are; later starts say how to get another
client; the CLI's listings give whole ids and the same JSON types as `client create --json`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.operator.helpers import run_cli
from tests.test_serve import _free_port

REPO = Path(__file__).resolve().parents[2]


def _readme_using_the_api_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using the API", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def _serve(directory: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env.update(EC_PORT=str(port), PYTHONUNBUFFERED="1", COLUMNS="80")
    return subprocess.Popen(
        [sys.executable, "-m", "event_collector", "serve"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait_ready(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, "serve exited"
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def _stop(server: subprocess.Popen[str]) -> str:
    server.send_signal(signal.SIGINT)
    output, _ = server.communicate(timeout=60)
    return output


def _cli(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(directory, *args, columns=60)  # narrow: ids must still come out whole


def test_banner_exports_then_readme_block_work_pasted_in_bash(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(tmp_path, port)
    try:
        _wait_ready(base, server)
        output = _stop(server)
        exports = [line for line in output.splitlines() if line.startswith("export ")]
        assert exports == [
            f"export API={base}",
            exports[1],
        ]
        assert re.fullmatch(r"export CLIENT_ID=demo-\w+ CLIENT_SECRET=\S+", exports[1])

        server = _serve(tmp_path, port)
        _wait_ready(base, server)
        script = "\n".join([*exports, _readme_using_the_api_block()])
        pasted = subprocess.run(
            ["bash", "-e", "-c", script], capture_output=True, text=True, timeout=60
        )
        assert pasted.returncode == 0, pasted.stderr
        answers = [json.loads(line) for line in re.findall(r"^\{.*\}$", pasted.stdout, re.M)]
        assert len(answers) == 3, pasted.stdout  # created, read back, listed
        assert answers[0]["id"] == "evt-1"
        assert answers[1]["id"] == "evt-1"
        assert [item["id"] for item in answers[2]["items"]] == ["evt-1"]

        second = _stop(server)
        assert "client_secret" not in second
        assert "Create another client: event-collector client create demo" in second
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()

    # client list: whole ids on a narrow terminal, and the JSON of `client create --json`.
    created = json.loads(_cli(tmp_path, "client", "create", "demo", "--json").stdout)
    listed = _cli(tmp_path, "client", "list", "demo")
    assert listed.returncode == 0, listed.stderr
    assert created["client_id"] in listed.stdout
    as_json = json.loads(_cli(tmp_path, "client", "list", "demo", "--json").stdout)
    entry = next(row for row in as_json if row["client_id"] == created["client_id"])
    assert entry["scopes"] == created["scopes"]
    assert entry["tenant"] == created["tenant"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["created_at"])
    assert entry["revoked_at"] is None
    revoked = _cli(tmp_path, "client", "revoke", created["client_id"])
    assert revoked.returncode == 0, revoked.stderr

    tenants = json.loads(_cli(tmp_path, "tenant", "list", "--json").stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", tenants[0]["created_at"])


def test_rebuild_of_an_unknown_tenant_fails_with_a_message(tmp_path: Path) -> None:
    result = _cli(tmp_path, "rebuild-read-model", "--tenant", "nosuch", "--yes")
    assert result.returncode == 1
    assert "tenant 'nosuch' does not exist" in result.stderr
    assert "rebuilt" not in result.stdout


def test_help_has_no_python_type_labels(tmp_path: Path) -> None:
    for command in (["--help"], ["client", "create", "--help"], ["rebuild-read-model", "--help"]):
        result = _cli(tmp_path, *command)
        assert result.returncode == 0
        for odd in ("<bool>", "<str>", "<list[str]>", "{tenant}"):
            assert odd not in result.stdout, (command, odd)
    usage = _cli(tmp_path, "client", "create", "--help").stdout
    assert re.search(r"client create\s+\[OPTIONS\] TENANT", usage), usage
