"""Structured logging with the request id of the request being served."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
access_logger = logging.getLogger("event_collector.access")


class AccessLog:
    """The optional per-request log line (``EC_ACCESS_LOG``). Off, it costs the request path one
    attribute test: the hot ingest path must not pay for a log nobody reads."""

    __slots__ = ("enabled",)

    def __init__(self) -> None:
        self.enabled = False

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """One line for a served request (called while its request id is still current)."""
        duration_ms = round(seconds * 1000, 3)
        access_logger.info(
            "method=%s route=%s status=%d duration_ms=%s",
            method,
            route,
            status,
            duration_ms,
            extra={
                "request_id": request_id_var.get() or "-",
                "fields": {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            },
        )


access_log = AccessLog()


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
        )
    formatter.converter = __import__("time").gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_event_collector", False):
            root.removeHandler(existing)
    handler._event_collector = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # The access log repeats what /metrics counts and costs on the hot path.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
