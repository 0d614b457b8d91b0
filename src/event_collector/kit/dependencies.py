"""FastAPI dependencies for the plumbing every endpoint uses: transactions, settings, secrets.

The process's runtime (``event_collector.runtime``) sits on ``app.state.runtime``; kit reads only
the parts kit defines, so it knows nothing of the domains (they add their own dependencies, e.g.
``auth.dependencies`` for the tenant context).

``ReadConnection`` / ``WriteConnection`` give the endpoint a connection inside a transaction that
ends when the endpoint returns, before the response is sent (``scope="function"``): committed if
it returned, rolled back if it raised. An endpoint that must act after the commit (wake a worker,
say) takes the :class:`Database` (``Db``) and opens its own transaction instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Protocol

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database
from event_collector.kit.settings import Settings


class _Plumbing(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def secrets(self) -> SecretBox: ...


def plumbing(request: Request) -> _Plumbing:
    runtime: _Plumbing = request.app.state.runtime
    return runtime


async def read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with plumbing(request).db.read() as conn:
        yield conn


async def write_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with plumbing(request).db.write() as conn:
        yield conn


def database(request: Request) -> Database:
    return plumbing(request).db


def settings(request: Request) -> Settings:
    return plumbing(request).settings


def secrets(request: Request) -> SecretBox:
    return plumbing(request).secrets


ReadConnection = Annotated[AsyncConnection, Depends(read_connection, scope="function")]
WriteConnection = Annotated[AsyncConnection, Depends(write_connection, scope="function")]
Db = Annotated[Database, Depends(database)]
AppSettings = Annotated[Settings, Depends(settings)]
Secrets = Annotated[SecretBox, Depends(secrets)]
