"""The database: engine and transactions (engine.py), the connection repositories receive
(connection.py), which errors mean the database is unavailable (faults.py), the column types
(types.py), and the backend that hides what differs between
SQLite and PostgreSQL (backend.py, sqlite.py, postgres.py)."""

from event_collector.kit.db.backend import Backend, BulkStatement
from event_collector.kit.db.connection import AnyConnection, InlineConnection
from event_collector.kit.db.engine import (
    PING_AFTER_IDLE_SECONDS,
    Database,
    backend_of,
    create_engine,
)
from event_collector.kit.db.faults import is_unavailable
from event_collector.kit.db.types import BigIntPK, JSONType, UTCDateTime, metadata, utcnow

__all__ = [
    "PING_AFTER_IDLE_SECONDS",
    "AnyConnection",
    "Backend",
    "BigIntPK",
    "BulkStatement",
    "Database",
    "InlineConnection",
    "JSONType",
    "UTCDateTime",
    "backend_of",
    "create_engine",
    "is_unavailable",
    "metadata",
    "utcnow",
]
