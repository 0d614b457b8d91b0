"""Slow clients, the connection cap and oversized bodies against a real `event-collector serve`
process (issue 12 item 3): what these prove lives in the HTTP protocol (kit/server.py) and in the
process's memory, which an in-process app cannot show. The database does not matter here (the
limits act before any query), so the server runs on a SQLite file.
"""

from __future__ import annotations

import os
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.subscriptions.helpers import URL as SUBSCRIPTIONS

JOBS = "/api/v1/jobs"
EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"

# --- a real server: slow clients, the connection cap, oversized bodies ----------------------

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 3.0
KEEPALIVE_TIMEOUT = 1.0
MAX_CONNECTIONS = 8
MAX_BATCH_BODY = 4 << 20
HUGE = 200 << 20  # what an attacker sends: far more than any limit


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.base = f"http://127.0.0.1:{port}"
        self.headers: dict[str, str] = {}

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10 * HEAD_TIMEOUT)
        return sock

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set (VmHWM): a body buffered even for a moment shows."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kilobytes = re.search(r"VmHWM:\s+(\d+) kB", status)
        assert kilobytes is not None
        return int(kilobytes.group(1)) * 1024

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def connections_cut(self, reason: str) -> float:
        metrics = httpx.get(f"{self.base}/metrics").text
        found = re.search(rf'ec_http_connections_cut_total{{reason="{reason}"}} (\S+)', metrics)
        return float(found.group(1)) if found else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: Server, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.output()
        try:
            if httpx.get(f"{server.base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not become ready: {server.output()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env.update(
        EC_PORT=str(port),
        EC_DATABASE_URL=f"sqlite:///{directory / 'ec.db'}",
        EC_KEY_DIR=str(directory / "keys"),
        EC_BOOTSTRAP_DEMO="true",
        EC_DISPATCHER_ENABLED="false",
        EC_SCHEDULER_ENABLED="false",
        EC_HTTP_HEADER_TIMEOUT_SECONDS=str(HEAD_TIMEOUT),
        EC_HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        EC_HTTP_KEEPALIVE_TIMEOUT_SECONDS=str(KEEPALIVE_TIMEOUT),
        EC_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        EC_MAX_BATCH_BODY_BYTES=str(MAX_BATCH_BODY),
    )
    log = directory / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "event_collector", "serve"],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(process, port, log)
    try:
        _wait_ready(running)
        client_id = re.search(r"client_id:\s+(\S+)", running.output())
        secret = re.search(r"client_secret:\s+(\S+)", running.output())
        assert client_id, running.output()
        assert secret, running.output()
        token = httpx.post(
            f"{running.base}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id.group(1),
                "client_secret": secret.group(1),
            },
        ).json()["access_token"]
        running.headers = {"Authorization": f"Bearer {token}", "X-TWC-Tenant": "demo"}
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out,
    which fails the test: the server kept it open)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open; got {received!r}") from None
        if not chunk:
            return received
        received += chunk


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head and its Content-Length body) from a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed in the middle of a response: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head.lower())
    assert length is not None, head
    while len(body) < int(length.group(1)):
        chunk = sock.recv(65536)
        assert chunk, f"closed in the middle of a response: {received!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def _served(server: Server) -> bool:
    try:
        return httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _wait_served(server: Server, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not _served(server):
        assert time.monotonic() < deadline, "the server does not serve a legitimate client"
        time.sleep(0.05)


def test_slowloris_heads_are_cut_off_and_real_clients_are_served(server: Server) -> None:
    _wait_served(server)
    silent = server.connect()  # connects and never sends a byte
    partial = [server.connect() for _ in range(3)]
    for sock in partial:
        sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    trickle = server.connect()  # a header line at a time: bytes do not restart the clock
    trickle.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()
    # While they hang, a real client is served.
    assert _served(server)
    while not select.select([trickle], [], [], 0.1)[0]:
        assert time.monotonic() - started < 10 * HEAD_TIMEOUT, "the trickling head was not cut off"
        trickle.sendall(b"X-Slow: 1\r\n")
    for sock in [silent, *partial, trickle]:
        received = _read_until_closed(sock)
        assert received.startswith(b"HTTP/1.1 408 "), received
        assert b"was not complete within 1 s" in received
        sock.close()
    # Cut off at the configured time (a bound on the behaviour, not a benchmark).
    assert time.monotonic() - started < HEAD_TIMEOUT + 5
    assert "request head was not complete within 1 s" in server.output()
    assert server.connections_cut("head_timeout") >= 5
    assert _served(server)


def test_idle_keep_alive_connections_are_closed(server: Server) -> None:
    _wait_served(server)
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 200"), first
        assert b"connection: close" not in first.lower()
        # Kept alive: a second request on it is served...
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        # ... then, idle, it is closed by the server.
        assert _read_until_closed(sock) == b""
    with server.connect() as sock:
        # A kept-alive connection that starts another head and stalls is cut off too.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 408")


TOKEN_FORM = b"grant_type=client_credentials&client_id=nobody&client_secret=nothing"


def _form_head(length: int) -> bytes:
    return (
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" % length
    )


def test_a_body_that_stops_coming_is_cut_off(server: Server) -> None:
    _wait_served(server)
    with server.connect() as sock:
        # The token route reads bodies without a token: the easiest to hold open.
        sock.sendall(_form_head(len(TOKEN_FORM)) + TOKEN_FORM[:10])
        received = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"request body paused for over 3 s" in received
    assert "request body paused for over 3 s" in server.output()
    assert server.connections_cut("body_timeout") >= 1


def test_a_slow_body_that_keeps_coming_is_served(server: Server) -> None:
    _wait_served(server)
    with server.connect() as sock:
        sock.sendall(_form_head(len(TOKEN_FORM)))
        pieces = [TOKEN_FORM[start : start + 10] for start in range(0, len(TOKEN_FORM), 10)]
        started = time.monotonic()
        for piece in pieces:  # together longer than the body timeout, each pause shorter
            sock.sendall(piece)
            time.sleep(BODY_TIMEOUT / 5)
        assert time.monotonic() - started > BODY_TIMEOUT
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 401 "), response  # an unknown client, not a 408


def test_connections_over_the_cap_are_answered_503_and_closed(server: Server) -> None:
    _wait_served(server)
    # Requests whose head is complete and whose body never comes hold their connections.
    held = [server.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(_form_head(100))
        with server.connect() as extra:
            received = _read_until_closed(extra)
        assert received.startswith(b"HTTP/1.1 503 "), received
        assert b"retry-after: 1" in received.lower()
        assert "refused a connection: the server holds its cap of 8" in server.output()
    finally:
        for sock in held:
            sock.close()
    _wait_served(server)
    assert server.connections_cut("over_cap") >= 1


def _send_body(
    server: Server, path: str, headers: dict[str, str], total: int, *, chunked: bool
) -> tuple[int, bytes]:
    """POST ``total`` bytes (declared or chunked) while reading the answer; the status and the
    response. The sender stops when the server closes the connection."""
    lines = [f"POST {path} HTTP/1.1", "Host: x", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sock = server.connect()
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    piece = b"[" * (256 << 10)
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece

    def send() -> None:
        try:
            for _ in range(total // len(piece)):
                sock.sendall(frame)
        except OSError:
            pass  # the server refused the body and closed

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        response = _read_until_closed(sock)
    finally:
        sock.close()
        sender.join(timeout=30)
    status = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert status is not None, response[:200]
    return int(status.group(1)), response


@pytest.mark.parametrize(
    ("path", "authenticated", "chunked", "status"),
    [
        (SUBSCRIPTIONS, False, False, 401),
        (SUBSCRIPTIONS, False, True, 401),
        (SUBSCRIPTIONS, True, False, 413),
        (SUBSCRIPTIONS, True, True, 413),
        (JOBS, True, True, 413),
        (EVENTS, False, False, 401),
        (BATCH, True, False, 413),
        (BATCH, True, True, 413),
        ("/oauth/token", False, True, 413),
    ],
)
def test_an_oversized_body_is_refused_without_buffering_it(
    server: Server, path: str, authenticated: bool, chunked: bool, status: int
) -> None:
    _wait_served(server)
    headers = {"Content-Type": "application/json"}
    if authenticated:
        headers.update(server.headers)
    before = server.peak_rss_bytes()
    answered, response = _send_body(server, path, headers, HUGE, chunked=chunked)
    assert answered == status, response[:300]
    assert b"connection: close" in response.lower()
    grown = server.peak_rss_bytes() - before
    assert grown < 32 << 20, f"the server's peak RSS grew by {grown >> 20} MiB"
    assert _served(server)


def test_serve_refuses_a_connection_cap_the_descriptor_limit_cannot_hold(tmp_path: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env.update(EC_HTTP_MAX_CONNECTIONS="5000", EC_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    result = subprocess.run(
        [sys.executable, "-m", "event_collector", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "EC_HTTP_MAX_CONNECTIONS=5000 needs about 5084 file descriptors" in message
    assert "Traceback" not in result.stderr
