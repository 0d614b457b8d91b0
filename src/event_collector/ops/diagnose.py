"""One line an operator can act on for the failures met when a command starts: the database
unreachable or missing, a schema never migrated, the key directory not writable.

:func:`explain` names the setting and the fix; it answers None for anything it does not
recognise (the CLI then shows the traceback, as for any bug).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from event_collector.kit.errors import DatabaseUnavailable
from event_collector.kit.settings import Settings

# PostgreSQL error codes (SQLSTATE) of connection-time failures.
_INVALID_CATALOG_NAME = "3D000"  # the database does not exist
_INVALID_AUTHORIZATION = "28000"  # the role does not exist / no pg_hba.conf entry
_INVALID_PASSWORD = "28P01"
_UNDEFINED_TABLE = "42P01"


class SchemaNotMigrated(Exception):
    """The database's schema is not the one the code expects."""

    def __init__(self, current: str | None, head: str | None) -> None:
        super().__init__(current, head)
        self.current = current
        self.head = head


class SqliteFileUnusable(Exception):
    """The SQLite file's directory is missing or not writable (found before connecting: the
    driver's own failure leaves its connection thread behind)."""


def check_sqlite_directory(settings: Settings) -> None:
    """Raise :class:`SqliteFileUnusable` when the SQLite database cannot be created or written."""
    if not settings.is_sqlite:
        return
    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        return
    directory = Path(database).resolve().parent
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise SqliteFileUnusable(database)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, what it wraps (SQLAlchemy's ``orig``) and its causes, each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]


def _where(settings: Settings) -> str:
    """The database a URL names, without its password."""
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return settings.database_url
    if settings.is_sqlite:
        return f"the SQLite file {url.database}"
    return f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}, database {url.database}"


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def explain(exc: BaseException, settings: Settings) -> str | None:
    """A one-line message for a start-up failure, or None when it is not one we know."""
    causes = list(_chain(exc))
    for cause in causes:
        message = _explain_one(cause, settings)
        if message:
            return message
    if any(isinstance(cause, DatabaseUnavailable) for cause in causes):
        # Not the API's sentence ("retry shortly"): the operator needs to know which database.
        return f"cannot reach {_where(settings)}: it does not answer (EC_DATABASE_URL)"
    return None


def _explain_one(exc: BaseException, settings: Settings) -> str | None:
    where = _where(settings)
    if isinstance(exc, SchemaNotMigrated):
        state = f"at revision {exc.current}" if exc.current else "empty (never migrated)"
        return (
            f"the database schema of {where} is {state}; this version needs {exc.head}: "
            "run `event-collector migrate` (EC_DATABASE_URL)"
        )
    if isinstance(exc, SqliteFileUnusable):
        return (
            f"cannot open {where}: its directory does not exist or is not writable "
            "(EC_DATABASE_URL)"
        )
    code = _sqlstate(exc)
    if code == _INVALID_CATALOG_NAME:
        return f"{where} does not exist: create it (createdb) or fix EC_DATABASE_URL"
    if code in (_INVALID_AUTHORIZATION, _INVALID_PASSWORD):
        return f"{where} refused the login: {exc} (check the user and password in EC_DATABASE_URL)"
    if code == _UNDEFINED_TABLE:
        return (
            f"{where} has no event-collector schema ({exc}): "
            "run `event-collector migrate` (EC_DATABASE_URL)"
        )
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        if "unable to open database file" in text:
            return (
                f"cannot open {where}: its directory does not exist or is not writable "
                "(EC_DATABASE_URL)"
            )
        if "readonly database" in text:
            return f"{where} is read-only: make it writable or fix EC_DATABASE_URL"
        if "no such table" in text:
            return f"{where} has no event-collector schema: run `event-collector migrate`"
    if isinstance(exc, OSError) and exc.filename is not None:
        path = Path(str(exc.filename)).resolve()
        key_dir = settings.key_dir.resolve()
        if path == key_dir or key_dir in path.parents:
            return (
                f"EC_KEY_DIR {settings.key_dir} cannot be created or written ({exc.strerror}): "
                "give this user a writable directory there or point EC_KEY_DIR elsewhere"
            )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"cannot reach {where}: connection refused. Is the server running there? "
            "(EC_DATABASE_URL)"
        )
    if isinstance(exc, TimeoutError):
        return f"cannot reach {where}: the connection timed out (EC_DATABASE_URL)"
    if isinstance(exc, OSError) and not settings.is_sqlite and exc.filename is None:
        return f"cannot reach {where}: {exc.strerror or exc} (EC_DATABASE_URL)"
    return None
