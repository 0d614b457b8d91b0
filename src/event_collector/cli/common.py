"""What every command shares: the Typer app, settings, running work, printing."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from event_collector.kit import migrate as migrations
from event_collector.kit.db import Database
from event_collector.kit.errors import EventCollectorError
from event_collector.kit.settings import Settings, load_settings
from event_collector.runtime import Runtime

app = typer.Typer(
    help="Event Collector: collect commerce events, forward them, notify customers.",
    no_args_is_help=True,
    add_completion=False,
)

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]


def cli_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``overrides``); a bad value exits 2 with a
    message naming the variable."""
    try:
        return load_settings(**overrides)
    except EventCollectorError as exc:
        err_console.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(2) from None


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; a service error exits 1 with its sentence."""

    try:
        return asyncio.run(main())
    except EventCollectorError as exc:
        err_console.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(1) from None


def run_with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on the database (migrated first when configured to), then close it."""

    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            if settings.should_auto_migrate:
                await migrations.upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    return run_async(main)


def run_until_signalled(runtime: Callable[[], Runtime], running: Callable[[Runtime], str]) -> None:
    """Build a runtime, start it, print ``running(runtime)`` and run until SIGINT or SIGTERM
    (the background processes: ``worker`` and the like)."""

    async def main() -> None:
        built = runtime()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await built.start()
            err_console.print(running(built))
            await stop.wait()
        finally:
            await built.stop()

    run_async(main)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
