"""The HTTP protocol `serve` runs: uvicorn's httptools protocol, with the limits it lacks.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but has no time limit on a
request head and no cap on connections: a slowloris client (a head sent a byte at a time, or a
connection that sends nothing) holds its connection, and its file descriptor, for ever, and a
thousand of them starve real clients. :func:`limited_protocol` builds the subclass that adds

* a head timeout: from the connection (or the first byte of the next request on a kept-alive
  one) to the end of the request head; past it the client gets 408 and the connection closes;
* a connection cap: a connection beyond it is answered 503 (``Retry-After: 1``) and closed at
  once, so its descriptor is freed rather than held.

Both are logged, at most one line a second per kind (an attack must not flood the log).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from event_collector.kit.errors import ConfigurationError
from event_collector.kit.http import dumps

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


class _ThrottledLog:
    """One warning a second at most, counting what it did not print."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.last = 0.0
        self.unlogged = 0

    def record(self, *args: Any) -> None:
        self.unlogged += 1
        now = time.monotonic()
        if now - self.last >= 1.0:
            logger.warning(self.message + " (%d in the last interval)", *args, self.unlogged)
            self.last = now
            self.unlogged = 0


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Configured by :func:`limited_protocol` (uvicorn builds one instance per connection)."""

    head_timeout_seconds: float = 10.0
    max_connections: int = 900
    refused_log: _ThrottledLog
    timed_out_log: _ThrottledLog
    unavailable_response: bytes
    timed_out_response: bytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

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

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

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
    head_timeout_seconds: float, max_connections: int
) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to pass as uvicorn's ``http=``, with these limits."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "head_timeout_seconds": head_timeout_seconds,
            "max_connections": max_connections,
            "refused_log": _ThrottledLog(
                "refused a connection: the server holds its cap of %d (EC_HTTP_MAX_CONNECTIONS)"
            ),
            "timed_out_log": _ThrottledLog(
                "closed a connection whose request head was not complete within %g s "
                "(EC_HTTP_HEADER_TIMEOUT_SECONDS)"
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
