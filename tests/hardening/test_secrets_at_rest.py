"""Secrets at rest: webhook custom headers sealed (migration 0008 seals the rows stored in
clear before it; reseal-secrets moves them to the newest key), the SQLite database and the key
files owner-only."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from event_collector.auth.keys import load_signing_keys
from event_collector.delivery.service import destination_of
from event_collector.kit import migrate
from event_collector.kit.crypto import SecretBox, create_key_file
from event_collector.kit.db import Database, utcnow
from event_collector.models import subscription_table, tenant_table
from event_collector.runtime import Runtime
from event_collector.subscriptions.service import open_headers, reseal_batch, seal_headers
from tests.conftest import TenantFixture, make_settings
from tests.subscriptions.helpers import URL, key_rotation, subscription_body, webhook_destination

AUTHORIZATION = "Bearer sk_live_migrated_0123456789"
API_KEY = "xk-migrated-abcdef0123456789"


def _json(value: object) -> dict[str, object]:
    """A JSON column read with raw SQL: a dict on PostgreSQL, text on SQLite."""
    return dict(value) if isinstance(value, dict) else json.loads(str(value))


async def _rows(db: Database) -> dict[str, dict[str, object]]:
    async with db.read() as conn:
        result = await conn.execute(sa.text("SELECT * FROM subscription"))
        return {row.id: dict(row._mapping) for row in result}


async def test_0008_seals_the_headers_stored_in_clear_and_its_downgrade_restores_them(
    empty_database_url: str, key_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database.from_settings(make_settings(empty_database_url, key_dir))
    box = SecretBox.from_key_dir(key_dir)
    headers = {"Authorization": AUTHORIZATION, "X-Api-Key": API_KEY, "X-Team": "crm"}
    try:
        await migrate.upgrade(db, "0007")
        now = utcnow()
        destinations = {
            "with-headers": ("WEBHOOK", {"url": "https://hooks.example.com/a", "headers": headers}),
            "no-headers": ("WEBHOOK", {"url": "https://hooks.example.com/b", "headers": {}}),
            "queue": (
                "SQS",
                {
                    "queueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q",
                    "region": "eu-west-1",
                    "accessKey": None,
                },
            ),
        }
        async with db.write() as conn:
            await conn.execute(sa.insert(tenant_table).values(id="t-0008", created_at=now))
            for subscription_id, (kind, destination) in destinations.items():
                await conn.execute(
                    sa.insert(subscription_table).values(
                        tenant="t-0008",
                        id=subscription_id,
                        entity_type="CUSTOMER",
                        active=True,
                        subscribe_create=True,
                        subscribe_change=True,
                        subscribe_delete=True,
                        destination_type=kind,
                        destination=destination,
                        created_at=now,
                        updated_at=now,
                    )
                )
        assert AUTHORIZATION in str(await _rows(db))  # the probe below can fail

        # Not with a key directory that has no key (a new one would not open on the servers)
        monkeypatch.setenv("EC_KEY_DIR", str(tmp_path / "no-keys"))
        with pytest.raises(RuntimeError, match="has none"):
            await migrate.upgrade(db)
        assert await migrate.current_revision(db) == "0007"
        assert not (tmp_path / "no-keys").exists()

        await migrate.upgrade(db, secrets=box)
        rows = await _rows(db)
        raw = str(rows)
        for plaintext in (AUTHORIZATION, API_KEY, "X-Api-Key", "crm"):
            assert plaintext not in raw
        sealed = rows["with-headers"]
        assert "headers" not in _json(sealed["destination"])
        assert open_headers(box, "t-0008", "with-headers", str(sealed["headers_sealed"])) == headers
        assert rows["no-headers"]["headers_sealed"] is None
        assert rows["queue"]["headers_sealed"] is None
        # the dispatcher gets them back in clear, in memory
        opened = destination_of(
            box,
            "t-0008",
            "with-headers",
            "WEBHOOK",
            _json(sealed["destination"]),
            None,
            str(sealed["headers_sealed"]),
        )
        assert opened.config["headers"] == headers
        # sealed for this subscription only: another's row cannot open them
        with pytest.raises(Exception, match="tampered"):
            open_headers(box, "t-0008", "no-headers", str(sealed["headers_sealed"]))

        # Without a box handed over, the migration uses the settings' key directory.
        monkeypatch.setenv("EC_KEY_DIR", str(key_dir))
        await migrate.downgrade(db, "0007")
        restored = await _rows(db)
        assert _json(restored["with-headers"]["destination"])["headers"] == headers
        assert _json(restored["no-headers"]["destination"])["headers"] == {}
        assert "headers_sealed" not in restored["with-headers"]
    finally:
        await db.dispose()


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A common umask: files would be created world-readable unless we ask otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
async def test_sqlite_database_files_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = make_settings(f"sqlite+aiosqlite:///{data / 'ec.db'}", tmp_path / "keys")
    db = Database.from_settings(settings)
    try:
        await migrate.upgrade(db)
        async with db.write() as conn:
            await conn.execute(sa.insert(tenant_table).values(id="t-mode", created_at=utcnow()))
        files = sorted(data.iterdir())
        # the database and, while it is open, its write-ahead log and shared-memory index
        assert {p.name for p in files} >= {"ec.db", "ec.db-wal", "ec.db-shm"}
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        await db.dispose()


@pytest.mark.usefixtures("umask_022")
def test_key_files_and_the_directories_we_create_are_owner_only(tmp_path: Path) -> None:
    key_dir = tmp_path / "state" / "keys"
    SecretBox.from_key_dir(key_dir)
    create_key_file(key_dir, kid="k2")  # rotate-secret-key
    load_signing_keys(key_dir)
    assert _mode(tmp_path / "state") == 0o700  # a parent we created too
    assert _mode(key_dir) == 0o700
    files = sorted(key_dir.iterdir())
    assert {p.name.split("-")[0] for p in files} == {"secret", "jwt"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


async def test_reseal_moves_sealed_headers_to_the_newest_key(
    client: httpx.AsyncClient, tenant: TenantFixture, context: Runtime
) -> None:
    current, old_box, rotated, _ = key_rotation(context)
    headers = {"Authorization": AUTHORIZATION}
    body = subscription_body(destination=webhook_destination(headers=headers))
    assert (await client.post(URL, json=body, headers=tenant.headers)).status_code == 201
    # as if sealed before the rotation
    key = (subscription_table.c.tenant == tenant.name) & (subscription_table.c.id == body["id"])
    async with context.db.write() as conn:
        await conn.execute(
            sa.update(subscription_table)
            .where(key)
            .values(headers_sealed=seal_headers(old_box, tenant.name, body["id"], headers))
        )

    after = None
    while True:
        async with context.db.write() as conn:
            progress = await reseal_batch(conn, rotated, after)
        if progress.next_after is None:
            break
        after = progress.next_after
    async with context.db.read() as conn:
        sealed = (
            await conn.execute(sa.select(subscription_table.c.headers_sealed).where(key))
        ).scalar_one()
    assert context.secrets.key_id_of(sealed) == current
    fetched = await client.get(f"{URL}/{body['id']}", headers=tenant.headers)
    assert fetched.json()["destination"]["webhook"]["headers"] == {
        "Authorization": "********" + AUTHORIZATION[-4:]
    }
