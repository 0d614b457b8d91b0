"""The send ledger: what each customer was notified about, once.

A ledger row's unique key is (tenant, job, customer, item, episode): reruns, retries, a crashed
run taken over and two schedulers racing all insert the same keys, and only the first insert
of a key wins. A notification carries only the items its run claimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import RowMapping

from event_collector.notifications.content import Message
from event_collector.notifications.repository import NotificationRepository
from event_collector.notifications.rules import (
    BACK_IN_STOCK,
    LOW_STOCK,
    PRICE_DROP,
    RuleParameters,
)


def episode_of(
    params: RuleParameters, row: RowMapping, now: datetime
) -> tuple[str, Decimal | None]:
    """The ledger episode of a candidate item, and the price level for PRICE_DROP."""
    if params.notification == PRICE_DROP:
        level = Decimal(str(row["price_level"])).quantize(Decimal("0.000001"))
        return f"price:{level.normalize():f}", level
    if params.notification == BACK_IN_STOCK:
        return f"restock:{row['episode_number']}", None
    if params.notification == LOW_STOCK:
        return f"low:{row['episode_number']}", None
    return f"reminder:{params.reminder_period(now)}", None


async def claim(
    repo: NotificationRepository,
    *,
    tenant: str,
    job_id: str,
    run_id: str,
    messages: Sequence[Message],
    now: datetime,
    in_run: set[str],
) -> tuple[list[Message], int]:
    """Claim the messages' items in the ledger; returns the messages cut to what this call
    claimed (empty ones dropped, ``ledger_ids`` set) and how many items another run had
    claimed first. ``in_run``: customers who already have a notification in this run (a run
    taken over), left out."""
    wanted = [m for m in messages if m.customer_id not in in_run]
    rows = [
        {
            "tenant": tenant,
            "job_id": job_id,
            "customer_id": m.customer_id,
            "item_id": item_id,
            "episode": episode,
            "price_level": level,
            "run_id": run_id,
            "notification_id": None,
            "created_at": now,
        }
        for m in wanted
        for item_id, episode, level in m.claims
    ]
    claimed = await repo.claim_ledger(rows)
    kept: list[Message] = []
    lost = 0
    for message in wanted:
        pairs = [(message.customer_id, item["item_id"]) for item in message.items]
        if all(pair in claimed for pair in pairs):
            message.ledger_ids = [claimed[pair] for pair in pairs]
            kept.append(message)
            continue
        items = [item for item, pair in zip(message.items, pairs, strict=True) if pair in claimed]
        lost += len(pairs) - len(items)
        if items:
            ids = {item["item_id"] for item in items}
            cut = Message(message.customer, items, [c for c in message.claims if c[0] in ids])
            cut.ledger_ids = [claimed[pair] for pair in pairs if pair in claimed]
            kept.append(cut)
    return kept, lost
