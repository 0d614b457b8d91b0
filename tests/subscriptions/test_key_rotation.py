"""Re-sealing secrets after a key rotation."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import update
from typer.testing import CliRunner

from event_collector.cli import app as cli
from event_collector.kit.crypto import KEY_PREFIX, SecretBox
from event_collector.models import subscription_table
from event_collector.runtime import Runtime
from event_collector.subscriptions.service import reseal_batch, secret_associated_data
from tests.conftest import TenantFixture
from tests.subscriptions.helpers import ACCESS_SECRET, URL, subscription_body
from tests.subscriptions.test_endpoints import stored_row


async def test_reseal_moves_old_secrets_to_the_newest_key(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    current = context.secrets.current_kid
    current_key = (context.settings.key_dir / f"{KEY_PREFIX}{current}.bin").read_bytes()
    old_key = AESGCM.generate_key(bit_length=256)
    old_box = SecretBox({"old": old_key}, current_kid="old")
    rotated = SecretBox({"old": old_key, current: current_key}, current_kid=current)
    lost_box = SecretBox({"lost": AESGCM.generate_key(bit_length=256)}, current_kid="lost")

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
    assert "examined 0 secrets" in resealed.output
