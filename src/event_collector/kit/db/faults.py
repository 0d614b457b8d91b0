"""Which exceptions mean "the database is unreachable or not answering".

The transaction wrappers (:class:`kit.db.Database`) translate these into
:class:`kit.errors.DatabaseUnavailable` (503 with ``Retry-After``), so no driver text reaches a
client and a worker can tell an outage (back off) from a bug (log it).
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# SQLSTATE classes and codes of a server that is going away or cannot serve us now:
# 08 connection exception, 53300 too many connections, 57014 statement timeout (query
# cancelled), 57P01-57P03 admin / crash shutdown and "cannot connect now".
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53300", "57014", "57P0")


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the database cannot be reached or did not
    answer in time, rather than that the statement was wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _says_unavailable(current):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def _says_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # Not InterfaceError as such: SQLAlchemy also maps asyncpg's DataError (a value the column
    # cannot hold) to it; what it wraps decides (below).
    if isinstance(
        exc,
        sa_exc.OperationalError  # SQLite: locked, I/O error, not migrated
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError,  # waiting for a pooled connection
    ):
        return True
    if isinstance(exc, TimeoutError | ConnectionError | OSError):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES):
        return True
    # asyncpg's own client-side errors (exactly InterfaceError: its DataError subclass is bad
    # input): "connection is closed", "another operation is in progress".
    return type(exc).__module__.startswith("asyncpg") and type(exc).__name__ == "InterfaceError"


def is_timeout(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is a timeout: a database that did not answer, as
    opposed to a connection that was found closed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | sa_exc.TimeoutError):
            return True
        if getattr(current, "sqlstate", None) == "57014":
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False
