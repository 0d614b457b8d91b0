"""The webhook HTTP/1.1 client against scripted servers on loopback: framing (Content-Length,
chunked, read-until-close), keep-alive reuse, a connection closed while idle, interim answers,
timeouts, TLS verification, and what the sender puts on the wire."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from event_collector.delivery.messages import OutgoingMessage
from event_collector.delivery.senders import Destination, Senders
from event_collector.delivery.webhook_http import Target, WebhookClient
from event_collector.kit.settings import Settings

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]


@dataclass
class Server:
    """Reads each request (head and Content-Length body) and lets ``answer`` reply; ``answer``
    returns whether to keep the connection open for the next request."""

    answer: Answer
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.answer(reader, writer, request):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer, tls: ssl.SSLContext | None = None) -> Server:
        server = Server(answer)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
        server.port = listening.sockets[0].getsockname()[1]
        servers.append(listening)
        return server

    yield start
    for listening in servers:
        listening.close()
        await listening.wait_closed()


def target(port: int, path: str = "/hook", scheme: str = "http") -> Target:
    head = b"POST %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n" % (path.encode(), port)
    return Target(scheme, "127.0.0.1", port, None, head)


def reply(raw: bytes, keep: bool = True) -> Answer:
    async def answer(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, _q: bytes) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep

    return answer


async def test_keep_alive_reuses_one_connection_and_reads_every_framing(
    serve: Callable[[Answer], Awaitable[Server]],
) -> None:
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 503 Busy Now\r\nretry-after: 7\r\ncontent-length: 2\r\n\r\nno",
        ]
    )

    async def answer(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, _q: bytes) -> bool:
        writer.write(next(answers))
        await writer.drain()
        return True

    server = await serve(answer)
    client = WebhookClient(timeout=5)
    try:
        statuses = []
        for _ in range(5):
            response = await client.post(target(server.port), b"x-a: 1\r\n", b'{"a":1}')
            statuses.append((response.status, response.reason, response.retry_after))
    finally:
        await client.close()
    assert statuses == [
        (200, "OK", None),
        (201, "Created", None),
        (204, "No Content", None),
        (202, "Accepted", None),
        (503, "Busy Now", "7"),
    ]
    assert server.connections == 1
    assert server.requests[0] == (
        b"POST /hook HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nx-a: 1\r\ncontent-length: 7\r\n\r\n"
        b'{"a":1}' % server.port
    )


async def test_connection_close_and_unframed_answers_use_a_new_connection(
    serve: Callable[[Answer], Awaitable[Server]],
) -> None:
    closing = await serve(
        reply(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", keep=False)
    )
    unframed = await serve(reply(b"HTTP/1.0 200 OK\r\n\r\nbody until the end", keep=False))
    client = WebhookClient(timeout=5)
    try:
        for server in (closing, unframed):
            for _ in range(3):
                assert (await client.post(target(server.port), b"", b"{}")).status == 200
            assert server.connections == 3
    finally:
        await client.close()


async def test_a_reused_connection_closed_by_the_server_is_retried_once_fresh(
    serve: Callable[[Answer], Awaitable[Server]],
) -> None:
    # The server answers one request per connection and closes the connection when a second
    # one comes (its idle timeout crossing our request): the client sends it again, fresh.
    served: set[int] = set()

    async def once(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, _q: bytes) -> bool:
        if id(writer) in served:
            return False
        served.add(id(writer))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        return True

    server = await serve(once)
    client = WebhookClient(timeout=5)
    try:
        for _ in range(2):
            assert (await client.post(target(server.port), b"", b"{}")).status == 200
    finally:
        await client.close()
    assert server.connections == 2
    assert len(server.requests) == 3  # the unanswered one again on the new connection

    # A connection the server closed while idle is dropped from the pool, not tried.
    closing = await serve(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", keep=False))
    client = WebhookClient(timeout=5)
    try:
        for _ in range(3):
            assert (await client.post(target(closing.port), b"", b"{}")).status == 200
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    assert len(closing.requests) == 3
    assert closing.connections == 3


async def test_failures_raise_and_never_pool_a_broken_connection(
    serve: Callable[[Answer], Awaitable[Server]],
) -> None:
    async def silent(_r: asyncio.StreamReader, _w: asyncio.StreamWriter, _q: bytes) -> bool:
        await asyncio.sleep(10)
        return False

    async def cut(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, _q: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
        await writer.drain()
        return False

    slow = await serve(silent)
    truncated = await serve(cut)
    garbage = await serve(reply(b"SMTP ready\r\n\r\n"))
    # Two answers to one request: the first is taken, the connection is not reused.
    doubled = await serve(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" * 2))
    client = WebhookClient(timeout=0.3)
    try:
        with pytest.raises(TimeoutError):
            await client.post(target(slow.port), b"", b"{}")
        with pytest.raises(ConnectionError, match="before a complete answer"):
            await client.post(target(truncated.port), b"", b"{}")
        with pytest.raises(ConnectionError, match="invalid HTTP answer"):
            await client.post(target(garbage.port), b"", b"{}")
        assert len(truncated.requests) == 1  # a fresh connection is not retried
        for _ in range(2):
            assert (await client.post(target(doubled.port), b"", b"{}")).status == 200
        assert doubled.connections == 2
        with pytest.raises(ConnectionRefusedError):
            await client.post(target(_closed_port()), b"", b"{}")
        assert not any(client._idle.values())
    finally:
        await client.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_tls_is_verified(serve: Callable[..., Awaitable[Server]], tmp_path: Path) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert, key = _self_signed(tmp_path)
    server_tls.load_cert_chain(cert, key)
    server = await serve(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), tls=server_tls)
    client = WebhookClient(timeout=5)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await client.post(target(server.port, scheme="https"), b"", b"{}")
        client._tls = ssl.create_default_context(cafile=str(cert))  # trust it: it answers
        pinned = Target("https", "127.0.0.1", server.port, "localhost", target(server.port).head)
        assert (await client.post(pinned, b"", b"{}")).status == 200
    finally:
        await client.close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_sender_puts_headers_credentials_and_signature_on_the_wire(
    serve: Callable[[Answer], Awaitable[Server]],
) -> None:
    server = await serve(reply(b"HTTP/1.1 204 No Content\r\n\r\n"))
    senders = Senders(Settings(webhook_allowed_hosts="127.0.0.1"))
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    url = f"http://user:p%40ss@127.0.0.1:{server.port}/in?x=1"
    message = OutgoingMessage("d-1", '{"é":1}', {}, "g", "d-1")
    try:
        destination = Destination(
            "t",
            "s",
            "WEBHOOK",
            {"url": url, "headers": {"X-Team": "blue", "User-Agent": "mine/2"}},
            secret,
        )
        (ok,) = await senders.send(destination, [message])
        assert ok.ok, ok.error
        assert ok.status_code == 204
        (request,) = server.requests
        head, body = request.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /in?x=1 HTTP/1.1"
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        assert headers[b"host"] == b"127.0.0.1:%d" % server.port
        assert headers[b"authorization"] == b"Basic " + base64.b64encode(b"user:p@ss")
        assert headers[b"X-Team"] == b"blue"
        assert headers[b"User-Agent"] == b"mine/2"
        assert b"user-agent" not in headers  # replaced, not sent twice
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"webhook-id"] == b"d-1"
        assert headers[b"webhook-signature"].startswith(b"v1,")
        assert body == '{"é":1}'.encode()

        split = Destination(
            "t", "s", "WEBHOOK", {"url": url, "headers": {"X-A": "1\r\nX-Evil: 1"}}, None
        )
        (refused,) = await senders.send(split, [message])
        assert not refused.ok
        assert refused.permanent
        assert "not a valid HTTP header" in (refused.error or "")
        assert len(server.requests) == 1
    finally:
        await senders.close()


def test_works_on_uvloop() -> None:
    """`serve` and `worker` run on uvloop, which sets up transports differently."""
    import uvloop

    async def scenario() -> tuple[list[int], int]:
        server = Server(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        server.port = listening.sockets[0].getsockname()[1]
        client = WebhookClient(timeout=5)
        try:
            statuses = [(await client.post(target(server.port), b"", b"{}")).status for _ in "ab"]
        finally:
            await client.close()
            listening.close()
        return statuses, server.connections

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == ([200, 200], 1)


async def test_idle_connections_are_closed_after_a_while(
    serve: Callable[[Answer], Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from event_collector.delivery import webhook_http

    monkeypatch.setattr(webhook_http, "IDLE_SECONDS", 0.05)
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    left, other = await serve(reply(ok)), await serve(reply(ok))
    client = WebhookClient(timeout=5)
    try:
        await client.post(target(left.port), b"", b"{}")
        (pooled,) = client._idle[("http", "127.0.0.1", left.port, None)]
        await asyncio.sleep(0.1)
        await client.post(target(other.port), b"", b"{}")  # releasing sweeps the pool
        assert pooled.closed
        assert ("http", "127.0.0.1", left.port, None) not in client._idle
        assert len(client._idle[("http", "127.0.0.1", other.port, None)]) == 1
    finally:
        await client.close()
