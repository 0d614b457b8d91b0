"""The webhook HTTP/1.1 client: one POST at a time per keep-alive connection.

Why not aiohttp: at ~2k webhooks/s, aiohttp's per-request machinery (request and response
objects, payload registry, multidicts, tracing hooks, the connector's bookkeeping) was a third
of the dispatcher's CPU. A webhook needs little of it: a POST with a body we already hold, the
status line, ``Retry-After``, and the connection back in the pool. This client writes the
request in one ``transport.write`` and parses the response with ``httptools`` (llhttp, the
parser uvicorn uses; Content-Length, chunked and read-until-close bodies, which are discarded).

* **Keep-alive**: connections are pooled per (scheme, address, port, TLS name) and reused
  unless the server says ``Connection: close``, the body was not framed, or anything went wrong.
  A reused connection the server closed while it was idle (before any byte of the answer
  arrived) is retried once on a new connection: the request cannot have been answered, and a
  rare re-send is within at-least-once (consumers deduplicate on ``webhook-id``).
* **Timeouts**: one deadline per request covers connecting, TLS, sending and the whole answer.
* **TLS**: verified with the system's CAs; the TLS name can differ from the address connected
  to (the SSRF guard pins the vetted address).
* No redirects (a 3xx is returned as it is), no cookies, no decompression (the body is ignored).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import httptools

# Idle connections kept per destination address (more than the per-destination concurrency).
MAX_IDLE_PER_KEY = 64
# An idle connection is closed after this long (servers' own idle timeouts are often 5-60 s).
IDLE_SECONDS = 15.0


class WebhookConnectionError(ConnectionError):
    """The connection failed or closed before a complete answer."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a webhook URL's requests go: the address to connect to and what to send."""

    scheme: str  # http | https
    address: str  # a host name or an IP address (the vetted one when pinned)
    port: int
    tls_name: str | None  # TLS server name when it is not ``address``
    head: bytes  # "POST <path> HTTP/1.1\r\nhost: <host>\r\n"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    retry_after: str | None


class _Connection(asyncio.Protocol):
    """One connection and the answer being read on it (httptools calls the ``on_*`` methods)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._received = False
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: the answer's end is known
        self._reason = b""
        self._retry_after: bytes | None = None
        self.reusable = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # nothing asked: a misbehaving server
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(WebhookConnectionError(f"invalid HTTP answer: {exc}"))

    def eof_received(self) -> bool:
        self._ended()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended(exc)

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            self._retry_after = value
        elif name == b"content-length" or (
            name == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103): the real one follows
            self._start_answer()
            return
        self.reusable = self._parser.should_keep_alive()
        self._resolve(status)

    # The request

    def _start_answer(self) -> None:
        self._headers_done = False
        self._framed = False
        self._reason = b""
        self._retry_after = None

    async def exchange(self, request: bytes, deadline: float) -> Response:
        """Send ``request`` and wait for the answer until ``deadline`` (loop time)."""
        assert self.transport is not None
        self._start_answer()
        self._received = False
        self.reusable = False
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        # A timer on the waiter rather than asyncio.timeout(): cheaper, once per request.
        timer = loop.call_at(deadline, self._time_out)
        try:
            self.transport.write(request)
            return await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    @property
    def received_anything(self) -> bool:
        return self._received

    def _resolve(self, status: int) -> None:
        if self._waiter is None or self._waiter.done():  # a second answer to one request
            self.close()
            return
        retry_after = self._retry_after.decode("latin-1") if self._retry_after else None
        self._waiter.set_result(
            Response(status, self._reason.decode("latin-1").strip(), retry_after)
        )

    def _ended(self, exc: Exception | None = None) -> None:
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed:
            # An answer delimited by the end of the connection (HTTP/1.0 style): complete.
            self._resolve(self._parser.get_status_code())
            return
        reason = f": {exc}" if exc else ""
        self._fail(WebhookConnectionError(f"connection closed before a complete answer{reason}"))

    def _time_out(self) -> None:
        self._fail(TimeoutError())

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class WebhookClient:
    """Keep-alive pool of HTTP/1.1 connections for webhook POSTs."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._idle: dict[tuple[str, str, int, str | None], list[_Connection]] = {}
        self._swept = 0.0
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def post(self, target: Target, headers: bytes, body: bytes) -> Response:
        """POST ``body``; ``headers`` are complete ``name: value\\r\\n`` lines (no framing).

        Raises ``TimeoutError`` past the deadline, ``OSError`` (connection refused, TLS,
        :class:`WebhookConnectionError`) when no complete answer came."""
        request = b"%s%scontent-length: %d\r\n\r\n%s" % (target.head, headers, len(body), body)
        deadline = asyncio.get_running_loop().time() + self._timeout
        connection, reused = await self._acquire(target, deadline)
        try:
            response = await _exchange(connection, request, deadline)
        except WebhookConnectionError:
            if not reused or connection.received_anything:
                raise
            # The server closed the idle connection as we reused it: one fresh try.
            connection, _ = await self._acquire(target, deadline, fresh=True)
            response = await _exchange(connection, request, deadline)
        self._release(target, connection)
        return response

    async def _acquire(
        self, target: Target, deadline: float, *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        if not fresh:
            idle = self._idle.get(_key(target))
            while idle:
                connection = idle.pop()
                if not connection.closed:
                    return connection, True
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if target.scheme == "https" else None
        transport, connection = await asyncio.wait_for(
            loop.create_connection(
                _Connection,
                target.address,
                target.port,
                ssl=tls,
                server_hostname=(target.tls_name or target.address) if tls else None,
            ),
            max(deadline - loop.time(), 0),
        )
        connection.transport = transport  # uvloop may call connection_made only later
        return connection, False

    def _release(self, target: Target, connection: _Connection) -> None:
        idle = self._idle.setdefault(_key(target), [])
        usable = connection.reusable and not connection.closed and not self._closed
        if usable and len(idle) < MAX_IDLE_PER_KEY:
            connection.idle_since = now = asyncio.get_running_loop().time()
            idle.append(connection)
            if now - self._swept > IDLE_SECONDS:
                self._sweep(now)
        else:
            connection.close()

    def _sweep(self, now: float) -> None:
        """Close connections idle too long (those of destinations no longer sent to, too)."""
        self._swept = now
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and now - c.idle_since <= IDLE_SECONDS]
            for connection in idle:
                if connection not in keep:
                    connection.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports close


async def _exchange(connection: _Connection, request: bytes, deadline: float) -> Response:
    try:
        return await connection.exchange(request, deadline)
    except BaseException:
        connection.close()  # a failure, timeout or cancellation mid-answer: the stream is lost
        raise


def _key(target: Target) -> tuple[str, str, int, str | None]:
    return (target.scheme, target.address, target.port, target.tls_name)
