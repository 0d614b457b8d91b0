"""Operator tasks on stored data and keys: rebuilding the read model, rotating and re-sealing
the keys of secrets at rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from event_collector.auth import service as auth_service
from event_collector.cli.common import (
    YesOption,
    app,
    cli_settings,
    console,
    err_console,
    run_with_database,
)
from event_collector.kit.db import Database
from event_collector.kit.errors import NotFound

if TYPE_CHECKING:
    from event_collector.kit.crypto import ResealProgress, SecretBox
    from event_collector.kit.db import AnyConnection


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
        if tenant is not None:
            async with db.read() as conn:
                known = {row["id"] for row in await auth_service.list_tenants(conn)}
            if tenant not in known:
                raise NotFound(
                    f"tenant {tenant!r} does not exist (see `event-collector tenant list`)"
                )
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
    """Re-encrypt every stored secret with the newest key (after a rotation): subscription
    secrets and custom headers, and the tenants' SendGrid keys (email settings)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from event_collector.kit.crypto import ResealProgress, SecretBox
    from event_collector.notifications import email_settings
    from event_collector.subscriptions import service as subscriptions

    settings = cli_settings()
    box = SecretBox.from_key_dir(settings.key_dir)
    batches: dict[str, Callable[[AnyConnection, SecretBox, Any], Awaitable[ResealProgress[Any]]]]
    batches = {
        "subscriptions": subscriptions.reseal_batch,
        "email settings": email_settings.reseal_batch,
    }

    async def work(db: Database) -> dict[str, ResealProgress[Any]]:
        totals = {what: ResealProgress[Any](next_after=None) for what in batches}
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=err_console
        ) as bar:
            task = bar.add_task("re-sealing secrets")
            for what, reseal_batch in batches.items():
                total = totals[what]
                after: Any = None
                while True:
                    async with db.write() as conn:
                        progress = await reseal_batch(conn, box, after)
                    total.examined += progress.examined
                    total.resealed += progress.resealed
                    total.unreadable += progress.unreadable
                    bar.update(
                        task,
                        description=f"{what}: examined {total.examined}, "
                        f"re-sealed {total.resealed}",
                    )
                    if progress.next_after is None:
                        break
                    after = progress.next_after
        return totals

    totals = run_with_database(settings, work)
    resealed = sum(total.resealed for total in totals.values())
    unreadable = sum(total.unreadable for total in totals.values())
    examined = " and ".join(f"{total.examined} {what}" for what, total in totals.items())
    # Rows are examined (a subscription holds up to two secrets: its secret and its headers);
    # secrets are what is re-sealed or unreadable.
    console.print(
        f"examined {examined}, re-sealed {resealed} secrets with key {box.current_kid}"
        + (f", [red]{unreadable} secrets could not be opened[/]" if unreadable else "")
    )
    if unreadable:
        raise typer.Exit(1)


@app.command("purge")
def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Apply the retention settings (EC_RETENTION_*) now, in batches, with a progress bar.

    Deletes delivered deliveries and their attempt logs, and (when configured) dead letters and
    events nothing needs any more; never pending deliveries. See docs/retention.md.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from event_collector.ops import retention

    settings = cli_settings()
    policy = retention.RetentionPolicy.from_settings(settings)

    async def work(db: Database) -> dict[str, int]:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
        ) as bar:
            tasks: dict[str, Any] = {}

            def report(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done, total=total)

            return await retention.purge(db, policy, dry_run=dry_run, progress=report)

    counts = run_with_database(settings, work)
    if not counts:
        console.print("retention is off (every EC_RETENTION_*_DAYS is 0): nothing to purge")
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} " + ", ".join(f"{count} {what}" for what, count in counts.items()))
