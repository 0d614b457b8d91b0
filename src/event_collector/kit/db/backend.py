"""What differs between the two databases, behind one object chosen at start-up.

The domains write their SQL once per database where it must differ (a bulk statement is a
multi-row ``VALUES`` list on SQLite and one array per column on PostgreSQL), as named
statements next to the repository that owns the table; the :class:`Backend` decides which text
runs and how the rows reach the driver. Nothing outside ``kit/db`` asks which database it is
talking to: it asks the backend (``backend_of(conn)``) to do the thing.

The split follows procrastinate's job manager and connector: the domain says *what* (a named
statement and its rows), the backend says *how* on its driver.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import ColumnElement, Select, Table

from event_collector.kit.db.connection import AnyConnection

SelectT = TypeVar("SelectT", bound=Select[Any])


@dataclass(frozen=True, slots=True)
class BulkStatement:
    """One statement over many rows of ``columns`` values each (and ``scalars`` shared ones).

    * ``sqlite``: contains ``{rows}``, replaced by ``(?, ?, …), (?, ?, …)``: the rows as a
      ``VALUES`` list whose columns are ``column1`` … ``columnN``, then the scalars repeated in
      every row (``columnN+1`` …). Sent in chunks under SQLite's parameter limit.
    * ``postgres``: the columns as arrays ``$1`` … ``$N`` (typically ``unnest``), then the
      scalars ``$N+1`` …. Sent once, whatever the number of rows.
    """

    name: str
    columns: int
    sqlite: str
    postgres: str
    scalars: int = 0


class Backend(ABC):
    """The database-specific half of every repository (see the module docstring)."""

    name: ClassVar[str]
    listens: ClassVar[bool]
    """Whether other processes' writes can be announced to this one (PostgreSQL LISTEN)."""
    commits_out_of_order: ClassVar[bool]
    """Whether concurrent writers can commit rows in another order than their sequence numbers
    (PostgreSQL): a feed read by cursor must then stop at a commit-ordered high-water mark
    (:meth:`below_commit_mark`)."""

    @abstractmethod
    def timestamp(self, value: datetime) -> object:
        """A UTC timestamp as the driver takes it in a bulk or driver statement's rows."""

    @abstractmethod
    async def bulk(
        self,
        conn: AnyConnection,
        statement: BulkStatement,
        rows: Sequence[Sequence[object]],
        scalars: Sequence[object] = (),
    ) -> list[tuple[Any, ...]]:
        """Run ``statement`` over ``rows``; the rows it returns (``RETURNING``), if any."""

    @abstractmethod
    def skip_locked(self, query: SelectT, *of: Any) -> SelectT:
        """``query`` locking the rows it selects, skipping rows another transaction holds
        (PostgreSQL); as is where writes are serialised anyway (SQLite)."""

    @abstractmethod
    def for_update(self, query: SelectT) -> SelectT:
        """``query`` locking the rows it selects until the transaction ends (PostgreSQL)."""

    @abstractmethod
    def below_commit_mark(self, query: SelectT, txid: ColumnElement[Any]) -> SelectT:
        """``query`` restricted to rows whose writing transaction (the ``txid`` column) is below
        the commit-ordered high-water mark, so no row can later appear below it (PostgreSQL); as
        is where rows commit in sequence order (SQLite)."""

    @abstractmethod
    async def insert_unless_exists(
        self, conn: AnyConnection, table: Table, values: dict[str, Any]
    ) -> bool:
        """INSERT … ON CONFLICT DO NOTHING: whether the row was inserted (a unique key already
        held by another row, however many writers race for it, inserts nothing)."""

    @abstractmethod
    async def notify(self, conn: AnyConnection, channel: str) -> None:
        """Announce ``channel`` to listening processes when the transaction commits."""
