"""The connection repositories receive: SQLAlchemy's AsyncConnection, or on SQLite the ingest
writer's :class:`InlineConnection` (see ``Database.write_inline``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection


class InlineConnection:
    """The part of ``AsyncConnection`` repositories use, over a synchronous connection.

    Its coroutines never suspend, so a transaction run through it executes in one stretch on
    the event loop. See :meth:`Database.write_inline` for why.
    """

    def __init__(self, sync_connection: Connection) -> None:
        self.sync_connection = sync_connection

    @property
    def dialect(self) -> Dialect:
        return self.sync_connection.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync_connection.execute(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync_connection.scalar(statement, parameters)

    async def scalars(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync_connection.scalars(statement, parameters)

    async def run_sync(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(self.sync_connection, *args, **kwargs)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        """A savepoint: released when the block ends, rolled back if it raises."""
        with self.sync_connection.begin_nested():
            yield


if TYPE_CHECKING:
    # An InlineConnection offers the part of AsyncConnection that repositories use; typing it
    # as one keeps SQLAlchemy's precise result types (a union with it makes mypy crash).
    AnyConnection = AsyncConnection
else:
    AnyConnection = AsyncConnection | InlineConnection
"""What ingest hooks and the repositories they call receive (see Database.write_inline)."""
