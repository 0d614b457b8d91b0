"""The long-running processes (`serve`, `worker`) and `migrate`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from event_collector.auth import service as auth_service
from event_collector.cli.common import (
    app,
    cli_settings,
    console,
    run_until_signalled,
    run_with_database,
)
from event_collector.kit import migrate as migrations
from event_collector.kit.db import Database
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

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = cli_settings(**overrides)
    configure_logging(settings.log_format, settings.log_level)
    run_with_database(settings, lambda db: _bootstrap_demo(db, settings))
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
    from event_collector.kit.logging import configure_logging

    settings = cli_settings()
    configure_logging(settings.log_format, settings.log_level)

    def running(runtime: Runtime) -> str:
        assert runtime.dispatcher is not None
        return f"delivery worker {runtime.dispatcher.owner} running (Ctrl-C to stop)"

    run_until_signalled(
        lambda: Runtime.build(settings, api=False, dispatcher=True),
        running,
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
