"""What every command shares: the Typer app, settings, running work, printing."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperOption

from event_collector.kit import migrate as migrations
from event_collector.kit.db import Database
from event_collector.kit.errors import DatabaseUnavailable, EventCollectorError
from event_collector.kit.settings import Settings, load_settings
from event_collector.ops.diagnose import SchemaNotMigrated, check_sqlite_directory, explain
from event_collector.runtime import Runtime

_CLICK_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


def _type_label(param: TyperArgument | TyperOption, ctx: Any) -> str | None:
    """click's labels (TEXT, INTEGER, a|b) and none for flags."""
    if getattr(param, "is_flag", False):
        return None
    label = param.display_type(ctx).removeprefix("<").removesuffix(">")
    label = label.removeprefix("list[").removesuffix("]")  # a repeatable option: one value
    return _CLICK_TYPE_NAMES.get(label, label)


def _option_label(self: TyperOption, ctx: Any) -> str | None:
    return self.metavar if self.metavar is not None else _type_label(self, ctx)


def _argument_usage(self: TyperArgument) -> str:
    name = self.display_name_raw.upper()
    return name if self.required else f"[{name}]"


# typer 0.29 labels parameters with Python annotations (`<bool>` on flags, `<list[str]>`) and
# required arguments as `{tenant}` in the usage line; operators expect click's `TENANT`, `TEXT`.
TyperOption.display_type_rich = _option_label  # type: ignore[method-assign]
TyperArgument.display_type_rich = _type_label  # type: ignore[method-assign,assignment]
TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
)

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")
# --debug: show the traceback behind a one-line start-up error (EC_LOG_LEVEL=DEBUG does too).
_show_tracebacks = False


def _print_version(value: bool) -> None:
    if value:
        console.print(f"event-collector {package_version('event-collector')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks behind error messages.")
    ] = False,
) -> None:
    """Event Collector: collect commerce events, forward them, notify customers."""
    global _show_tracebacks
    _show_tracebacks = debug


@contextmanager
def operator_errors(settings: Settings) -> Iterator[None]:
    """Turn a start-up failure an operator can fix (database unreachable or missing, schema not
    migrated, key directory not writable) into one line naming the setting, exit code 1.
    Anything else propagates with its traceback."""
    try:
        yield
    except typer.Exit:
        raise  # already reported
    except Exception as exc:
        message = explain(exc, settings)
        if message is None:
            raise
        if _show_tracebacks or settings.log_level == "DEBUG":
            err_console.print_exception()
        err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]


def cli_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``overrides``); a bad value exits 2 with a
    message naming the variable."""
    try:
        return load_settings(**overrides)
    except EventCollectorError as exc:
        err_console.print(f"[red]error:[/] {exc.detail}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; a service error exits 1 with its sentence."""

    try:
        return asyncio.run(main())
    except DatabaseUnavailable:
        raise  # operator_errors names the address and the setting (ops/diagnose.py)
    except EventCollectorError as exc:
        err_console.print(f"[red]error:[/] {exc.detail}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def run_with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on the database (migrated first when configured to), then close it."""

    async def main() -> T:
        check_sqlite_directory(settings)
        # Operator commands (migrations, rebuilds, purges) may run long statements.
        db = Database.from_settings(settings, bound_statements=False)
        try:
            if settings.should_auto_migrate:
                await migrations.upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    with operator_errors(settings):
        return run_async(main)


async def require_current_schema(db: Database) -> None:
    """Refuse to run on a database whose schema is not the code's (never migrated, or older)."""
    current, head = await migrations.current_revision(db), migrations.head_revision()
    if current != head:
        raise SchemaNotMigrated(current, head)


def run_until_signalled(
    settings: Settings, runtime: Callable[[], Runtime], running: Callable[[Runtime], str]
) -> None:
    """Check the database (reachable, current schema), then build a runtime, start it, print
    ``running(runtime)`` and run until SIGINT or SIGTERM (the background processes: ``worker``
    and the like). A failure to start is the one line ``serve`` gives (operator_errors)."""
    run_with_database(settings, require_current_schema)

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

    with operator_errors(settings):
        run_async(main)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
