"""The long-running processes (`serve`, `worker`) and `migrate`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from event_collector.auth import service as auth_service
from event_collector.auth.keys import load_signing_keys
from event_collector.cli.common import (
    app,
    cli_settings,
    console,
    err_console,
    require_current_schema,
    run_until_signalled,
    run_with_database,
)
from event_collector.kit import migrate as migrations
from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database
from event_collector.kit.errors import EventCollectorError
from event_collector.kit.settings import Settings
from event_collector.runtime import Runtime


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (EC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (EC_PORT).")] = None,
) -> None:
    """Run the HTTP API, the delivery dispatcher and the job scheduler (EC_*_ENABLED=false)."""
    import uvicorn

    from event_collector.app import create_app
    from event_collector.kit.logging import configure_logging
    from event_collector.kit.server import limited_protocol, reserve_file_descriptors

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = cli_settings(**overrides)
    try:
        reserve_file_descriptors(settings.http_max_connections, settings.database_pool_size)
    except EventCollectorError as exc:
        err_console.print(f"[red]error:[/] {exc.detail}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_format, settings.log_level)
    run_with_database(settings, lambda db: _prepare(db, settings))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=limited_protocol(
            settings.http_header_timeout_seconds,
            settings.http_body_timeout_seconds,
            settings.http_max_connections,
        ),
        timeout_keep_alive=settings.http_keepalive_timeout_seconds,  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        server_header=False,
    )


async def _prepare(db: Database, settings: Settings) -> None:
    """What must hold before serving (each failure is one line: cli.common.operator_errors):
    the database answers with the current schema, the key directory is usable; then the demo
    tenant on the first start."""
    await require_current_schema(db)
    load_signing_keys(settings.key_dir)
    SecretBox.from_key_dir(settings.key_dir)
    await _bootstrap_demo(db, settings)


async def _bootstrap_demo(db: Database, settings: Settings) -> None:
    if not settings.bootstrap_demo:
        return
    async with db.write() as conn:
        tenants = {row["id"] for row in await auth_service.list_tenants(conn)}
        if not tenants:
            await auth_service.create_tenant(conn, "demo")
            client = await auth_service.create_client(conn, "demo", name="demo")
    if tenants:
        if "demo" in tenants:
            console.print(
                "The demo tenant's credentials were printed on the first start. Lost them? "
                "Create another client: event-collector client create demo",
                soft_wrap=True,
                highlight=False,
            )
        return
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    # The export lines first: README "Using the API" pastes after them as it is.
    console.print(
        "\n[bold green]First start:[/] created tenant [bold]demo[/] and a client "
        "(the secret is shown only now; set EC_BOOTSTRAP_DEMO=false to skip this).\n"
        f"  client_id:     {client.client_id}\n  client_secret: {client.client_secret}\n\n"
        'Paste these into your shell, then the commands of the README\'s "Using the API":\n\n'
        f"export API={base}\n"
        f"export CLIENT_ID={client.client_id} CLIENT_SECRET={client.client_secret}\n\n"
        f"API docs: {base}/docs\n",
        soft_wrap=True,
        highlight=False,
    )


@app.command()
def worker() -> None:
    """Run only the delivery dispatcher (scale-out: any number of workers on one PostgreSQL)."""
    from event_collector.kit.logging import configure_logging

    settings = cli_settings()
    configure_logging(settings.log_format, settings.log_level)

    def running(runtime: Runtime) -> str:
        assert runtime.dispatcher is not None
        return f"delivery worker {runtime.dispatcher.owner} running (Ctrl-C to stop)"

    run_until_signalled(
        settings, lambda: Runtime.build(settings, api=False, dispatcher=True), running
    )


@app.command()
def migrate() -> None:
    """Apply database migrations up to the newest schema."""
    settings = cli_settings()

    async def work(db: Database) -> str | None:
        await migrations.upgrade(db)
        return await migrations.current_revision(db)

    revision = run_with_database(settings, work)
    console.print(f"database schema is at revision [bold]{revision}[/]")
