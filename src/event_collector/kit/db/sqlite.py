"""The SQLite backend: statements go straight to the driver, rows as multi-row ``VALUES`` lists.

On the ingest writer's inline connection (:class:`InlineConnection`) a statement runs on the
sqlite3 connection itself, without SQLAlchemy's per-statement work: at a group commit per loop
turn, building and compiling a statement cost several times the query. Elsewhere (the
aiosqlite engine) through ``exec_driver_sql``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects import sqlite

from event_collector.kit.db.backend import Backend, BulkStatement, SelectT
from event_collector.kit.db.connection import AnyConnection, InlineConnection

# SQLite's default limit on a statement's parameters (SQLITE_MAX_VARIABLE_NUMBER) is 32,766.
_MAX_PARAMETERS = 32_000


def sqlite_timestamp(value: datetime) -> str:
    """A UTC timestamp as UTCDateTime stores it on SQLite, for statements sent to the driver:
    the text of SQLAlchemy's SQLite DATETIME, ``%Y-%m-%d %H:%M:%S.%f`` (naive UTC)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without "+00:00"


class SQLiteBackend(Backend):
    name = "sqlite"
    listens = False
    commits_out_of_order = False

    def timestamp(self, value: datetime) -> object:
        return sqlite_timestamp(value)

    async def bulk(
        self,
        conn: AnyConnection,
        statement: BulkStatement,
        rows: Sequence[Sequence[object]],
        scalars: Sequence[object] = (),
    ) -> list[tuple[Any, ...]]:
        width = statement.columns + len(scalars)
        placeholder = "(" + ",".join("?" * width) + ")"
        per_statement = _MAX_PARAMETERS // width
        returned: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            parameters: list[object] = []
            for row in chunk:
                parameters += row
                parameters += scalars
            text = statement.sqlite.format(rows=",".join([placeholder] * len(chunk)))
            returned += await _run(conn, text, parameters)
        return returned

    def skip_locked(self, query: SelectT, *of: Any) -> SelectT:
        return query  # write transactions are serialised (BEGIN IMMEDIATE)

    def for_update(self, query: SelectT) -> SelectT:
        return query

    def below_commit_mark(self, query: SelectT, txid: ColumnElement[Any]) -> SelectT:
        return query  # one writer at a time: every committed row is final

    async def insert_unless_exists(
        self, conn: AnyConnection, table: Table, values: dict[str, Any]
    ) -> bool:
        statement = sqlite.insert(table).values(**values).on_conflict_do_nothing()
        return bool((await conn.execute(statement)).rowcount)

    async def notify(self, conn: AnyConnection, channel: str) -> None:
        """Nothing to do: one process writes a SQLite database, and it wakes itself."""


async def _run(
    conn: AnyConnection, text: str, parameters: Sequence[object]
) -> list[tuple[Any, ...]]:
    if isinstance(conn, InlineConnection):
        driver = conn.sync_connection.connection.driver_connection
        assert driver is not None
        cursor = driver.execute(text, parameters)
        return cursor.fetchall() if cursor.description else []
    result = await conn.exec_driver_sql(text, tuple(parameters))
    return [tuple(row) for row in result.fetchall()] if result.returns_rows else []
