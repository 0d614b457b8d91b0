"""Operator tasks on stored data and keys: rebuilding the read model, rotating and re-sealing
the keys of secrets at rest."""

from __future__ import annotations

from typing import Annotated

import typer

from event_collector.cli.common import (
    YesOption,
    app,
    cli_settings,
    console,
    err_console,
    run_with_database,
)
from event_collector.kit.db import Database


@app.command("rebuild-read-model")
def rebuild_read_model(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant (default: every tenant).")
    ] = None,
    yes: YesOption = False,
) -> None:
    """Clear the read model and replay the stored events into it, in arrival order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from event_collector.read_model import rebuild as read_model_rebuild

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

            return await read_model_rebuild.rebuild(db, tenant, progress=report)

    replayed = run_with_database(cli_settings(), work)
    console.print(f"rebuilt the read model of {scope} from {replayed} events")


@app.command("rotate-secret-key")
def rotate_secret_key() -> None:
    """Add a new key for secrets at rest (EC_KEY_DIR); it seals from the next start on.

    Copy the new key file to every server, restart them, then run `reseal-secrets`. Older keys
    keep opening what they sealed; remove one only once `reseal-secrets` reports nothing left.
    """
    from event_collector.kit.crypto import KEY_PREFIX, create_key_file

    settings = cli_settings()
    kid = create_key_file(settings.key_dir)
    console.print(f"created {settings.key_dir / f'{KEY_PREFIX}{kid}.bin'} (key id {kid})")


@app.command("reseal-secrets")
def reseal_secrets() -> None:
    """Re-encrypt every stored subscription secret with the newest key (after a rotation)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from event_collector.kit.crypto import SecretBox
    from event_collector.subscriptions.service import reseal_batch

    settings = cli_settings()
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

    examined, resealed, unreadable = run_with_database(settings, work)
    console.print(
        f"examined {examined} secrets, re-sealed {resealed} with key {box.current_kid}"
        + (f", [red]{unreadable} could not be opened[/]" if unreadable else "")
    )
    if unreadable:
        raise typer.Exit(1)
