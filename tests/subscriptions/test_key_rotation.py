"""Re-sealing secrets after a key rotation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import select, update
from typer.testing import CliRunner

from event_collector.cli import app as cli
from event_collector.kit.crypto import KEY_PREFIX, SecretBox
from event_collector.models import subscription_table
from event_collector.models.notifications import email_settings_table
from event_collector.notifications import email_settings
from event_collector.runtime import Runtime
from event_collector.subscriptions.service import reseal_batch, secret_associated_data
from tests.conftest import TenantFixture
from tests.subscriptions.helpers import (
    ACCESS_SECRET,
    URL,
    key_rotation,
    stored_row,
    subscription_body,
)

SENDGRID_KEY = "SG.rotation-key-0123456789"


async def test_reseal_moves_old_secrets_to_the_newest_key(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    current, old_box, rotated, lost_box = key_rotation(context)

    ids = []
    for _ in range(3):
        body = subscription_body()
        assert (await client.post(URL, json=body, headers=tenant.headers)).status_code == 201
        ids.append(body["id"])
    # as if two had been sealed before the rotation, and one with a key since removed
    async with context.db.write() as conn:
        for subscription_id, box in ((ids[0], old_box), (ids[1], old_box), (ids[2], lost_box)):
            sealed = box.seal(
                ACCESS_SECRET, associated_data=secret_associated_data(tenant.name, subscription_id)
            )
            await conn.execute(
                update(subscription_table)
                .where(
                    subscription_table.c.tenant == tenant.name,
                    subscription_table.c.id == subscription_id,
                )
                .values(secret_sealed=sealed)
            )

    resealed = unreadable = 0
    after = None
    while True:
        async with context.db.write() as conn:
            progress = await reseal_batch(conn, rotated, after, limit=2)
        resealed += progress.resealed
        unreadable += progress.unreadable
        if progress.next_after is None:
            break
        after = progress.next_after
    assert resealed == 2
    assert unreadable >= 1  # ours; other tests' rows are sealed with the current key

    for subscription_id in ids[:2]:
        row = await stored_row(context, tenant.name, subscription_id)
        assert context.secrets.key_id_of(row["secret_sealed"]) == current
        fetched = await client.get(f"{URL}/{subscription_id}", headers=tenant.headers)
        assert (
            fetched.json()["destination"]["sqs"]["accessSecret"] == "********" + ACCESS_SECRET[-4:]
        )
    # a secret nothing can open is still never shown
    fetched = await client.get(f"{URL}/{ids[2]}", headers=tenant.headers)
    assert fetched.status_code == 200
    assert fetched.json()["destination"]["sqs"]["accessSecret"] == "********"


async def test_reseal_moves_old_sendgrid_keys_to_the_newest_key(
    client, tenant: TenantFixture, other_tenant: TenantFixture, context: Runtime
) -> None:
    current, old_box, rotated, lost_box = key_rotation(context)
    # the tenant's key sealed before the rotation; the other's with a key since removed
    for who, box in ((tenant, old_box), (other_tenant, lost_box)):
        body = {"provider": "sendgrid", "sendgrid_api_key": SENDGRID_KEY}
        response = await client.put("/api/v1/email-settings", json=body, headers=who.headers)
        assert response.status_code == 200
        async with context.db.write() as conn:
            await conn.execute(
                update(email_settings_table)
                .where(email_settings_table.c.tenant == who.name)
                .values(
                    sendgrid_api_key_sealed=box.seal(
                        SENDGRID_KEY, associated_data=f"email-settings:{who.name}"
                    )
                )
            )

    resealed = unreadable = examined = 0
    after = None
    while True:
        async with context.db.write() as conn:
            progress = await email_settings.reseal_batch(conn, rotated, after, limit=1)
        examined += progress.examined
        resealed += progress.resealed
        unreadable += progress.unreadable
        if progress.next_after is None:
            break
        after = progress.next_after
    assert examined >= 2
    assert resealed == 1  # ours; other tests' keys are sealed with the current key
    assert unreadable >= 1

    async with context.db.read() as conn:
        sealed = await conn.scalar(
            select(email_settings_table.c.sendgrid_api_key_sealed).where(
                email_settings_table.c.tenant == tenant.name
            )
        )
    assert context.secrets.key_id_of(sealed) == current
    shown = (await client.get("/api/v1/email-settings", headers=tenant.headers)).json()
    assert shown["sendgrid_api_key"] == "********" + SENDGRID_KEY[-4:]
    lost = await client.get("/api/v1/email-settings", headers=other_tenant.headers)
    assert lost.status_code == 200
    assert lost.json()["effective"]["sendgrid_api_key_unreadable"] is True


def test_cli_rotate_and_reseal(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {
        "EC_KEY_DIR": str(tmp_path / "keys"),
        "EC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
    }
    first = runner.invoke(cli, ["rotate-secret-key"], env=env)
    assert first.exit_code == 0, first.output
    assert len(list((tmp_path / "keys").glob(f"{KEY_PREFIX}*.bin"))) == 1
    second = runner.invoke(cli, ["rotate-secret-key"], env=env)
    assert second.exit_code == 0, second.output
    assert len(list((tmp_path / "keys").glob(f"{KEY_PREFIX}*.bin"))) == 2
    resealed = runner.invoke(cli, ["reseal-secrets"], env=env)
    assert resealed.exit_code == 0, resealed.output
    assert "examined 0 subscriptions and 0 email settings, re-sealed 0 secrets" in " ".join(
        resealed.output.split()
    )


def test_cli_reseal_covers_the_email_settings_sendgrid_keys(tmp_path: Path) -> None:
    """A tenant's SendGrid key sealed before a rotation is re-sealed by the command (and
    counted as email settings, not as subscriptions)."""
    runner = CliRunner()
    database = tmp_path / "cli.db"
    env = {
        "EC_KEY_DIR": str(tmp_path / "keys"),
        "EC_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
    }
    assert runner.invoke(cli, ["rotate-secret-key"], env=env).exit_code == 0
    assert runner.invoke(cli, ["migrate"], env=env).exit_code == 0
    old = SecretBox.from_key_dir(tmp_path / "keys")
    sealed = old.seal("SG.cli-key-0123456789", associated_data="email-settings:shop")
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO email_settings (tenant, sendgrid_api_key_sealed, updated_at)"
            " VALUES (?, ?, ?)",
            ("shop", sealed, "2026-01-01 00:00:00.000000"),
        )
    assert runner.invoke(cli, ["rotate-secret-key"], env=env).exit_code == 0
    resealed = runner.invoke(cli, ["reseal-secrets"], env=env)
    assert resealed.exit_code == 0, resealed.output
    assert "examined 0 subscriptions and 1 email settings, re-sealed 1 secrets" in " ".join(
        resealed.output.split()
    )
    rotated = SecretBox.from_key_dir(tmp_path / "keys")
    with sqlite3.connect(database) as conn:
        [(now_sealed,)] = conn.execute("SELECT sendgrid_api_key_sealed FROM email_settings")
    assert rotated.key_id_of(now_sealed) == rotated.current_kid != old.current_kid
    assert (
        rotated.open(now_sealed, associated_data="email-settings:shop") == "SG.cli-key-0123456789"
    )
