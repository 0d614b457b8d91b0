"""The `event-collector` command: serve, migrate, tenant and client administration."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from event_collector.auth import service as auth_service
from event_collector.kit import migrate as migrations
from event_collector.kit.db import Database
from event_collector.kit.errors import EventCollectorError
from event_collector.kit.settings import Settings, load_settings

app = typer.Typer(
    help="Event Collector: collect commerce events, forward them, notify customers.",
    no_args_is_help=True,
    add_completion=False,
)
tenant_app = typer.Typer(help="Administer tenants.", no_args_is_help=True)
client_app = typer.Typer(help="Administer OAuth2 clients of a tenant.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(client_app, name="client")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _settings() -> Settings:
    try:
        return load_settings()
    except EventCollectorError as exc:
        err_console.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(2) from None


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            if settings.should_auto_migrate:
                await migrations.upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except EventCollectorError as exc:
        err_console.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(1) from None


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (EC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (EC_PORT).")] = None,
) -> None:
    """Run the HTTP API and the delivery dispatcher (EC_DISPATCHER_ENABLED=false: API only)."""
    import uvicorn

    from event_collector.app import create_app
    from event_collector.kit.logging import configure_logging

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = load_settings(**overrides) if overrides else _settings()
    configure_logging(settings.log_format, settings.log_level)
    _run(settings, lambda db: _bootstrap_demo(db, settings))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )


async def _bootstrap_demo(db: Database, settings: Settings) -> None:
    if not settings.bootstrap_demo:
        return
    async with db.write() as conn:
        if await auth_service.list_tenants(conn):
            return
        await auth_service.create_tenant(conn, "demo")
        client = await auth_service.create_client(conn, "demo", name="demo")
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    payload = (
        '{"id":"demo-1","entity_id":"c-1","event_type":"CUSTOMER",'
        '"event_payload":{"operation":"CREATE",'
        '"base64_encoded_payload_json":"eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSJ9"}}'
    )
    console.print(
        "\n[bold green]First start:[/] created tenant [bold]demo[/] and a client "
        "(the secret is shown only now; set EC_BOOTSTRAP_DEMO=false to skip this).\n"
        f"  client_id:     {client.client_id}\n  client_secret: {client.client_secret}\n\n"
        "Try it:\n"
        f"  TOKEN=$(curl -s {base}/oauth/token -d grant_type=client_credentials "
        f"-d client_id={client.client_id} -d client_secret={client.client_secret} "
        "| python3 -c 'import sys,json;print(json.load(sys.stdin)[\"access_token\"])')\n"
        f'  curl -s {base}/api/v1/events -H "Authorization: Bearer $TOKEN" '
        f"-H 'X-TWC-Tenant: demo' -H 'Content-Type: application/json' -d '{payload}'\n"
        f'  curl -s {base}/api/v1/events/demo-1 -H "Authorization: Bearer $TOKEN" '
        "-H 'X-TWC-Tenant: demo'\n"
        f"  API docs: {base}/docs\n",
        soft_wrap=True,
        highlight=False,
    )


@app.command()
def worker() -> None:
    """Run only the delivery dispatcher (scale-out: any number of workers on one PostgreSQL)."""
    import signal

    from event_collector.delivery.dispatcher import Dispatcher
    from event_collector.kit.crypto import SecretBox
    from event_collector.kit.logging import configure_logging

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)

    async def work(db: Database) -> None:
        dispatcher = Dispatcher(settings, db, SecretBox.from_key_dir(settings.key_dir))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await dispatcher.start()
        err_console.print(f"delivery worker {dispatcher.owner} running (Ctrl-C to stop)")
        try:
            await stop.wait()
        finally:
            await dispatcher.stop()

    _run(settings, work)


@app.command()
def migrate() -> None:
    """Apply database migrations up to the newest schema."""
    settings = _settings()

    async def work(db: Database) -> str | None:
        await migrations.upgrade(db)
        return await migrations.current_revision(db)

    revision = _run(settings, work)
    console.print(f"database schema is at revision [bold]{revision}[/]")


@app.command("rebuild-read-model")
def rebuild_read_model(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant (default: every tenant).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Clear the read model and replay the stored events into it, in arrival order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from event_collector.read_model import service as read_model_service

    scope = f"tenant {tenant!r}" if tenant else "every tenant"
    if not yes:
        typer.confirm(f"Rebuild the read model of {scope}?", abort=True)

    async def work(db: Database) -> int:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("replaying events", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return await read_model_service.rebuild(db, tenant, progress=report)

    replayed = _run(_settings(), work)
    console.print(f"rebuilt the read model of {scope} from {replayed} events")


@tenant_app.command("create")
def tenant_create(tenant: str, as_json: JsonOption = False) -> None:
    """Register a tenant (its id is the X-TWC-Tenant value)."""

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await auth_service.create_tenant(conn, tenant)

    _run(_settings(), work)
    _print_json({"tenant": tenant}) if as_json else console.print(f"created tenant {tenant}")


@tenant_app.command("list")
def tenant_list(as_json: JsonOption = False) -> None:
    """List tenants with their number of active clients."""

    async def work(db: Database) -> list[dict[str, Any]]:
        async with db.read() as conn:
            return await auth_service.list_tenants(conn)

    rows = _run(_settings(), work)
    if as_json:
        _print_json(rows)
        return
    table = Table("tenant", "active clients", "created at")
    for row in rows:
        table.add_row(row["id"], str(row["clients"]), str(row["created_at"]))
    console.print(table)


@tenant_app.command("delete")
def tenant_delete(
    tenant: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a tenant and its clients (its tokens stop working; stored data is kept)."""
    if not yes:
        typer.confirm(f"Delete tenant {tenant!r} and all its clients?", abort=True)

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await auth_service.delete_tenant(conn, tenant)

    _run(_settings(), work)
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

    client = _run(_settings(), work)
    if as_json:
        _print_json(
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

    rows = _run(_settings(), work)
    if as_json:
        _print_json(rows)
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

    _run(_settings(), work)
    console.print(f"revoked client {client_id}")


@app.command("rotate-secret-key")
def rotate_secret_key() -> None:
    """Add a new key for secrets at rest (EC_KEY_DIR); it seals from the next start on.

    Copy the new key file to every server, restart them, then run `reseal-secrets`. Older keys
    keep opening what they sealed; remove one only once `reseal-secrets` reports nothing left.
    """
    from event_collector.kit.crypto import KEY_PREFIX, create_key_file

    settings = _settings()
    kid = create_key_file(settings.key_dir)
    console.print(f"created {settings.key_dir / f'{KEY_PREFIX}{kid}.bin'} (key id {kid})")


@app.command("reseal-secrets")
def reseal_secrets() -> None:
    """Re-encrypt every stored subscription secret with the newest key (after a rotation)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from event_collector.kit.crypto import SecretBox
    from event_collector.subscriptions.service import reseal_batch

    settings = _settings()
    box = SecretBox.from_key_dir(settings.key_dir)

    async def work(db: Database) -> tuple[int, int, int]:
        after: tuple[str, str] | None = None
        examined = resealed = unreadable = 0
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=err_console
        ) as bar:
            task = bar.add_task("re-sealing secrets")
            while True:
                async with db.write() as conn:
                    progress = await reseal_batch(conn, box, after)
                examined += progress.examined
                resealed += progress.resealed
                unreadable += progress.unreadable
                bar.update(task, description=f"examined {examined}, re-sealed {resealed}")
                if progress.next_after is None:
                    return examined, resealed, unreadable
                after = progress.next_after

    examined, resealed, unreadable = _run(settings, work)
    console.print(
        f"examined {examined} secrets, re-sealed {resealed} with key {box.current_kid}"
        + (f", [red]{unreadable} could not be opened[/]" if unreadable else "")
    )
    if unreadable:
        raise typer.Exit(1)
