"""The HTTP protocol `serve` runs: uvicorn's httptools protocol, with the limits it lacks.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but has no time limit on a
request head or body and no cap on connections: a slowloris client (a head sent a byte at a
time, a body that never comes, or a connection that sends nothing) holds its connection, and its
file descriptor, for ever, and a thousand of them starve real clients. :func:`limited_protocol`
builds the subclass that adds

* a head timeout: from the connection (or the first byte of the next request on a kept-alive
  one) to the end of the request head; past it the client gets 408 and the connection closes;
* a body timeout: the longest pause between two pieces of a request body (while the server
  waits for them: not while the app is slow to read); past it, 408 (unless the answer has begun)
  and the connection closes;
* a connection cap: a connection beyond it is answered 503 (``Retry-After: 1``) and closed at
  once, so its descriptor is freed rather than held.

Both are logged, at most one line a second per kind (an attack must not flood the log).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from event_collector.kit.errors import ConfigurationError
from event_collector.kit.http import dumps
from event_collector.kit.metrics import http_connections_cut
from event_collector.kit.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def _response(template: bytes, error: str, detail: str) -> bytes:
    body = dumps({"error": error, "detail": detail})
    return template % (len(body), body)


class _ThrottledLog(ThrottledLog):
    """Counts a kind of cut connection (``ec_http_connections_cut_total``) and logs it: one
    warning a second at most, counting what it did not print."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(logger, message)
        self.counter = http_connections_cut.labels(reason)

    def record(self, *args: Any) -> None:
        self.counter.inc()
        super().record(*args)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Configured by :func:`limited_protocol` (uvicorn builds one instance per connection)."""

    head_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    max_connections: int = 900
    refused_log: _ThrottledLog
    timed_out_log: _ThrottledLog
    body_timed_out_log: _ThrottledLog
    unavailable_response: bytes
    timed_out_response: bytes
    body_timed_out_response: bytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_seen_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.refused_log.record(self.max_connections)
            transport.write(self.unavailable_response)
            transport.close()
            return
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        # Bytes between requests on a kept-alive connection (uvicorn has just cancelled its idle
        # timer) start the clock too, even those the parser skips without beginning a message.
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._start_head_timer()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()
        if any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers):
            self._body_seen_at = self.loop.time()
            self._body_timer = self.loop.call_later(self.body_timeout_seconds, self._body_check)

    def on_body(self, body: bytes) -> None:
        # A float per piece, not a timer: the timer checks it when it fires.
        self._body_seen_at = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_body_timer()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_timer()
        super().connection_lost(exc)

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_check(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        waited = self.loop.time() - self._body_seen_at
        if self.flow.read_paused or waited < self.body_timeout_seconds:
            # The app has not read what came (not the client's pause), or a piece came since.
            later = self.body_timeout_seconds - (0.0 if self.flow.read_paused else waited)
            self._body_timer = self.loop.call_later(later, self._body_check)
            return
        self.body_timed_out_log.record(self.body_timeout_seconds)
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(self.body_timed_out_response)
        self.transport.close()

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self.timed_out_log.record(self.head_timeout_seconds)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(self.timed_out_response)
        self.transport.close()


def limited_protocol(
    head_timeout_seconds: float, body_timeout_seconds: float, max_connections: int
) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to pass as uvicorn's ``http=``, with these limits."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "head_timeout_seconds": head_timeout_seconds,
            "body_timeout_seconds": body_timeout_seconds,
            "max_connections": max_connections,
            "refused_log": _ThrottledLog(
                "over_cap",
                "refused a connection: the server holds its cap of %d (EC_HTTP_MAX_CONNECTIONS)",
            ),
            "timed_out_log": _ThrottledLog(
                "head_timeout",
                "closed a connection whose request head was not complete within %g s "
                "(EC_HTTP_HEADER_TIMEOUT_SECONDS)",
            ),
            "body_timed_out_log": _ThrottledLog(
                "body_timeout",
                "closed a connection whose request body paused for over %g s "
                "(EC_HTTP_BODY_TIMEOUT_SECONDS)",
            ),
            "body_timed_out_response": _response(
                _REQUEST_TIMEOUT,
                "RequestTimeout",
                f"the request body paused for over {body_timeout_seconds:g} s",
            ),
            "unavailable_response": _response(
                _UNAVAILABLE,
                "ServiceUnavailable",
                "the server holds as many connections as it accepts; retry shortly",
            ),
            "timed_out_response": _response(
                _REQUEST_TIMEOUT,
                "RequestTimeout",
                f"the request head was not complete within {head_timeout_seconds:g} s",
            ),
        },
    )


def reserve_file_descriptors(max_connections: int, pool_size: int) -> None:
    """Make sure the process may open what the connection cap promises: the connections, the
    database pool (and its overflow) and some to spare (listening socket, logs, SQLite files).
    Raises the soft limit up to the hard one when needed; fails with a clear message when even
    that is too low, rather than failing clients with "too many open files" later."""
    needed = max_connections + 2 * pool_size + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigurationError(
            f"invalid configuration: EC_HTTP_MAX_CONNECTIONS={max_connections} needs about "
            f"{needed} file descriptors, and the process may open {hard} (ulimit -n): lower "
            "EC_HTTP_MAX_CONNECTIONS or raise the limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
