"""webhook custom headers sealed at rest

A webhook's custom headers (``Authorization``, ``X-Api-Key``, ...) were stored in clear in the
``destination`` JSON. They move, names and values as one JSON object, into ``headers_sealed``,
sealed with the server's SecretBox like the subscription's secret (bound to
``<tenant>:<id>:headers``). The downgrade opens them and puts them back.

The SecretBox is the one the caller passes (``kit.migrate.upgrade(db, secrets=...)``: the
runtime and the CLI do); otherwise the key directory of the environment's settings.

Revision ID: 0008_sealed_headers
Revises: 0007
Create Date: 2026-11-30 05:00:00
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import JSONType

revision: str = "0008_sealed_headers"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_subscription = sa.table(
    "subscription",
    sa.column("tenant"),
    sa.column("id"),
    sa.column("destination_type"),
    sa.column("destination", JSONType),
    sa.column("headers_sealed"),
)


def _box() -> SecretBox:
    box = context.config.attributes.get("secrets")
    if isinstance(box, SecretBox):
        return box
    from event_collector.kit.crypto import KEY_PREFIX
    from event_collector.kit.settings import load_settings

    key_dir = load_settings().key_dir
    if not any(key_dir.glob(f"{KEY_PREFIX}*.bin")):
        # A new key here would seal what the servers, with their own keys, cannot open.
        raise RuntimeError(
            f"migration 0008 seals webhook headers with the secret keys in EC_KEY_DIR, and "
            f"{key_dir} has none: run it with the servers' key directory"
        )
    return SecretBox.from_key_dir(key_dir)


def _associated(tenant: str, subscription_id: str) -> str:
    # Must stay equal to subscriptions.service.headers_associated_data.
    return f"{tenant}:{subscription_id}:headers"


def _webhooks(bind: sa.Connection) -> list[Any]:
    return list(
        bind.execute(
            sa.select(
                _subscription.c.tenant,
                _subscription.c.id,
                _subscription.c.destination,
                _subscription.c.headers_sealed,
            ).where(_subscription.c.destination_type == "WEBHOOK")
        )
    )


def _set(bind: sa.Connection, row: Any, destination: dict[str, Any], sealed: str | None) -> None:
    bind.execute(
        sa.update(_subscription)
        .where(_subscription.c.tenant == row.tenant, _subscription.c.id == row.id)
        .values(destination=destination, headers_sealed=sealed)
    )


def upgrade() -> None:
    with op.batch_alter_table("subscription") as batch_op:
        batch_op.add_column(sa.Column("headers_sealed", sa.Text(), nullable=True))
    bind = op.get_bind()
    box: SecretBox | None = None
    for row in _webhooks(bind):
        destination = dict(row.destination or {})
        if "headers" not in destination:
            continue
        headers = destination.pop("headers") or {}
        sealed = None
        if headers:
            box = box or _box()
            sealed = box.seal(json.dumps(headers), associated_data=_associated(row.tenant, row.id))
        _set(bind, row, destination, sealed)


def downgrade() -> None:
    bind = op.get_bind()
    box: SecretBox | None = None
    for row in _webhooks(bind):
        headers: dict[str, Any] = {}
        if row.headers_sealed:
            box = box or _box()
            headers = json.loads(
                box.open(row.headers_sealed, associated_data=_associated(row.tenant, row.id))
            )
        _set(bind, row, {**(row.destination or {}), "headers": headers}, None)
    with op.batch_alter_table("subscription") as batch_op:
        batch_op.drop_column("headers_sealed")
