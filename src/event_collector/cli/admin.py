"""The `tenant` and `client` groups: tenants and their OAuth2 clients."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from event_collector.auth import service as auth_service
from event_collector.cli.common import (
    JsonOption,
    YesOption,
    app,
    cli_settings,
    console,
    print_json,
    run_with_database,
)
from event_collector.kit.db import Database

tenant_app = typer.Typer(help="Administer tenants.", no_args_is_help=True)
client_app = typer.Typer(help="Administer OAuth2 clients of a tenant.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(client_app, name="client")


@tenant_app.command("create")
def tenant_create(tenant: str, as_json: JsonOption = False) -> None:
    """Register a tenant (its id is the X-TWC-Tenant value)."""

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await auth_service.create_tenant(conn, tenant)

    run_with_database(cli_settings(), work)
    print_json({"tenant": tenant}) if as_json else console.print(f"created tenant {tenant}")


@tenant_app.command("list")
def tenant_list(as_json: JsonOption = False) -> None:
    """List tenants with their number of active clients."""

    async def work(db: Database) -> list[dict[str, Any]]:
        async with db.read() as conn:
            return await auth_service.list_tenants(conn)

    rows = run_with_database(cli_settings(), work)
    if as_json:
        print_json(rows)
        return
    table = Table("tenant", "active clients", "created at")
    for row in rows:
        table.add_row(row["id"], str(row["clients"]), str(row["created_at"]))
    console.print(table)


@tenant_app.command("delete")
def tenant_delete(tenant: str, yes: YesOption = False) -> None:
    """Delete a tenant and its clients (its tokens stop working; stored data is kept)."""
    if not yes:
        typer.confirm(f"Delete tenant {tenant!r} and all its clients?", abort=True)

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await auth_service.delete_tenant(conn, tenant)

    run_with_database(cli_settings(), work)
    console.print(f"deleted tenant {tenant}")


@client_app.command("create")
def client_create(
    tenant: str,
    name: Annotated[str, typer.Option(help="A label for the client.")] = "default",
    scope: Annotated[
        list[str] | None,
        typer.Option(help="Grant only this scope (repeatable); default: all scopes."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a client; its secret is printed once and stored only as a hash."""

    async def work(db: Database) -> auth_service.IssuedClient:
        async with db.write() as conn:
            return await auth_service.create_client(conn, tenant, name=name, scopes=scope)

    client = run_with_database(cli_settings(), work)
    if as_json:
        print_json(
            {
                "tenant": client.tenant,
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "scopes": client.scopes,
            }
        )
        return
    console.print(
        f"client_id:     {client.client_id}\nclient_secret: {client.client_secret}\n"
        f"scopes:        {' '.join(client.scopes)}\n"
        "[yellow]The secret is shown only now.[/]",
        highlight=False,
    )


@client_app.command("list")
def client_list(
    tenant: Annotated[str | None, typer.Argument(help="Only this tenant's clients.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List clients (never their secrets)."""

    async def work(db: Database) -> list[dict[str, Any]]:
        async with db.read() as conn:
            return await auth_service.list_clients(conn, tenant)

    rows = run_with_database(cli_settings(), work)
    if as_json:
        print_json(rows)
        return
    table = Table("client_id", "tenant", "name", "scopes", "created at", "revoked at")
    for row in rows:
        table.add_row(
            row["client_id"],
            row["tenant_id"],
            row["name"],
            row["scopes"],
            str(row["created_at"]),
            str(row["revoked_at"] or ""),
        )
    console.print(table)


@client_app.command("revoke")
def client_revoke(client_id: str) -> None:
    """Revoke a client: it can no longer get tokens, and its tokens stop working."""

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await auth_service.revoke_client(conn, client_id)

    run_with_database(cli_settings(), work)
    console.print(f"revoked client {client_id}")
