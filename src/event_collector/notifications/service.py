"""Notification runs (DESIGN §6.2-6.5), the notifications API and the tenant's email settings.

:func:`execute_run` is the jobs' runner: it evaluates the job's rule over the read model in SQL,
builds one message per customer, and — unless it is a dry run — claims the items in the send
ledger, stores the notifications and sends them through the tenant's channel (and/or publishes
NOTIFICATION messages to the tenant's subscriptions).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic_core import to_json
from sqlalchemy.engine import RowMapping

from event_collector.delivery.messages import MAX_ORDERING_KEY
from event_collector.delivery.messages import Message as DeliveryMessage
from event_collector.jobs.runner import RunOutcome, RunRequest
from event_collector.kit.crypto import SecretBox
from event_collector.kit.cursors import decode_seq_cursor, encode_seq_cursor
from event_collector.kit.db import AnyConnection, Database
from event_collector.kit.errors import BadRequest
from event_collector.kit.settings import Settings
from event_collector.notifications import ledger
from event_collector.notifications.channels import (
    EmailChannel,
    OutgoingEmail,
    Sender,
    SendOutcome,
)
from event_collector.notifications.channels.outbox import SENT_ON_CLAIM
from event_collector.notifications.channels.sendgrid import SendGridChannel
from event_collector.notifications.channels.smtp import SmtpChannel
from event_collector.notifications.content import (
    Campaign,
    Message,
    Renderer,
    customer_data,
    item_data,
    subscription_message,
    template_data,
)
from event_collector.notifications.email_settings import resolve_sender
from event_collector.notifications.repository import NotificationRepository
from event_collector.notifications.rules import (
    BACK_IN_STOCK,
    ITEM,
    RuleParameters,
    run_query,
)

logger = logging.getLogger(__name__)

MESSAGE_CHANNEL = "message"
OUTPUTS = ("email", "message", "both")
SEND_BATCH = 1000
MESSAGE_BATCH = 200
"""Customers per claim-and-store transaction of a run (how long it holds SQLite's write lock)."""
STREAM_ROWS = 2000
"""Rows of the run query fetched at a time."""
LEASE = timedelta(minutes=5)

EnqueueMessages = Callable[
    [AnyConnection, str, str, str, Sequence[DeliveryMessage]], Awaitable[bool]
]
"""delivery.service.enqueue_messages(conn, tenant, entity_type, operation, messages)."""
NOTIFICATION_ENTITY = "NOTIFICATION"


@dataclass(frozen=True)
class NotifyDeps:
    db: Database
    settings: Settings
    secrets: SecretBox
    renderer: Renderer
    enqueue_messages: EnqueueMessages | None = None
    # Wakes this process's delivery dispatcher after messages were enqueued (other processes'
    # dispatchers are NOTIFYed at commit on PostgreSQL).
    wake_delivery: Callable[[], None] | None = None
    # SendGrid's HTTP client; a run makes its own when None.
    http: httpx.AsyncClient | None = None
    sendgrid_backoff_seconds: float = 1.0


def _output(parameters: Mapping[str, Any]) -> str:
    output = str(parameters.get("output") or "email").lower()
    if output not in OUTPUTS:
        raise BadRequest("job_parameters.output must be email, message or both")
    return output


async def execute_run(deps: NotifyDeps, request: RunRequest) -> RunOutcome:
    job = request.job
    parameters: Mapping[str, Any] = job.get("job_parameters") or {}
    params = RuleParameters.from_job(
        job_id=str(job["id"]),
        notification=str(job["notification"]),
        number_of_items_in_email=int(job.get("number_of_items_in_email", -1)),
        job_parameters=dict(parameters),
        max_items=deps.settings.notify_max_items,
    )
    campaign = Campaign.from_job(
        params.job_id, params.notification, job.get("template_id"), parameters
    )
    output = _output(parameters)
    async with deps.db.read(bulk=True) as conn:
        sender = await resolve_sender(conn, deps.settings, deps.secrets, request.tenant)
    email_channel = sender.provider if output in ("email", "both") else None
    if (
        email_channel == "sendgrid"
        and not sender.sendgrid_api_key
        and not sender.sendgrid_api_key_error  # a stored key that cannot be opened: fails per send
        and not request.dry_run
    ):
        raise BadRequest(
            "the email provider is SendGrid but no API key is set "
            "(PUT /api/v1/email-settings, or EC_SENDGRID_API_KEY)"
        )
    render = email_channel in ("outbox", "smtp")
    counts: dict[str, int] = {}
    items_in_messages = 0
    if request.dry_run:
        previews: list[dict[str, Any]] = []
        async with aclosing(_candidate_messages(deps, request, params, campaign, counts)) as found:
            async for messages in found:
                for message in messages:
                    items_in_messages += len(message.items)
                    if render:
                        deps.renderer.render(message, campaign)
                    previews.append(_preview(message, campaign, email_channel, output))
        counts["items_over_cap"] = counts["items_eligible"] - items_in_messages
        counts["messages"] = len(previews)
        return RunOutcome(counts, previews)

    if output != "email" and deps.enqueue_messages is None:
        raise BadRequest("NOTIFICATION messages are not available in this deployment")
    run_id = request.run_id or uuid.uuid4().hex
    async with deps.db.read() as conn:
        in_run = await NotificationRepository(conn).run_customers(request.tenant, run_id)
    lost = claimed_messages = 0
    enqueued = False
    # Each batch of customers is claimed and stored in a transaction of its own: a
    # run holds the database's write lock (SQLite) for one batch at a time, not for the run, and
    # keeps one batch of messages in memory. A message and its ledger claims commit together,
    # so a run that dies between batches leaves whole messages, and its takeover sends the rest.
    async with aclosing(_candidate_messages(deps, request, params, campaign, counts)) as found:
        async for messages in found:
            items_in_messages += sum(len(message.items) for message in messages)
            if render:  # before the write transaction: it holds SQLite's write lock
                for message in messages:
                    deps.renderer.render(message, campaign)
            async with deps.db.write() as conn:
                repo = NotificationRepository(conn)
                claimed, batch_lost = await ledger.claim(
                    repo,
                    tenant=request.tenant,
                    job_id=params.job_id,
                    run_id=run_id,
                    messages=messages,
                    now=request.now,
                    in_run=in_run,
                )
                if render:
                    for message in claimed:
                        if message.subject is None:  # cut by the claim: render what it lists
                            deps.renderer.render(message, campaign)
                if claimed:
                    enqueued |= await _store(
                        deps, conn, request, run_id, campaign, claimed, email_channel, output
                    )
            lost += batch_lost
            claimed_messages += len(claimed)
    if enqueued and deps.wake_delivery is not None:
        deps.wake_delivery()
    counts["items_over_cap"] = counts["items_eligible"] - items_in_messages
    counts["claimed_by_another_run"] = lost
    counts["messages"] = claimed_messages
    if email_channel is not None and email_channel not in SENT_ON_CLAIM:
        sent = await _send_pending(deps, sender, request, run_id, campaign, email_channel)
        for key, value in sent.items():
            counts[key] = counts.get(key, 0) + value
    else:
        counts["sent"] = claimed_messages
    counts.setdefault("errors", 0)
    return RunOutcome(counts)


async def _candidate_messages(
    deps: NotifyDeps,
    request: RunRequest,
    params: RuleParameters,
    campaign: Campaign,
    counts: dict[str, int],
) -> AsyncGenerator[list[Message]]:
    """The run query's messages, ``MESSAGE_BATCH`` customers at a time, streamed (a server-side
    cursor on PostgreSQL): only one batch of rows and messages is in memory at once.

    Its count rows come first (``row_kind`` orders them before the items); they fill ``counts``
    with the counts per skip reason (``skipped_<reason>``, items) and per customer
    (``considered``: known customers with wishlist items; ``customers_eligible``;
    ``skipped_no_eligible_items``) before the first batch is yielded."""
    counts.update(items_considered=0, items_eligible=0, customers_eligible=0)
    customers: set[str] = set()
    batch: list[Message] = []
    group: list[RowMapping] = []
    async with deps.db.read() as conn:
        result = await conn.stream(run_query(request.tenant, params, request.now))
        async for partition in result.mappings().partitions(STREAM_ROWS):
            for row in partition:
                if row["row_kind"] != ITEM:
                    _count(row, counts, customers)
                    continue
                if group and group[0]["customer_id"] != row["customer_id"]:
                    batch.append(_message(group, params, campaign, request.now))
                    group = []
                    if len(batch) == MESSAGE_BATCH:
                        _finish_counts(counts, customers)
                        yield batch
                        batch = []
                group.append(row)
    if group:
        batch.append(_message(group, params, campaign, request.now))
    _finish_counts(counts, customers)
    if batch:
        yield batch


def _count(row: RowMapping, counts: dict[str, int], customers: set[str]) -> None:
    counts["items_considered"] += row["items"]
    if row["customer_id"] is not None:
        customers.add(row["customer_id"])
    if row["reason"] is None:
        counts["items_eligible"] += row["items"]
        counts["customers_eligible"] += 1
    else:
        key = f"skipped_{row['reason']}"
        counts[key] = counts.get(key, 0) + row["items"]


def _finish_counts(counts: dict[str, int], customers: set[str]) -> None:
    counts["considered"] = len(customers)
    counts["skipped_no_eligible_items"] = counts["considered"] - counts["customers_eligible"]


def _message(
    rows: Sequence[RowMapping], params: RuleParameters, campaign: Campaign, now: datetime
) -> Message:
    """A customer's message from their candidate rows (ranked)."""
    claims = []
    for row in rows:
        episode, level = ledger.episode_of(params, row, now)
        claims.append((row["item_id"], episode, level))
    return Message(
        customer=customer_data(rows[0]),
        items=[item_data(row, campaign) for row in rows],
        claims=claims,
    )


def _preview(
    message: Message, campaign: Campaign, email_channel: str | None, output: str
) -> dict[str, Any]:
    preview: dict[str, Any] = {
        "customer_id": message.customer_id,
        "recipient": message.recipient,
        "notification_type": campaign.notification_type,
        "items": message.items,
        "channels": [
            c for c in (email_channel, MESSAGE_CHANNEL if output != "email" else None) if c
        ],
    }
    if email_channel == "sendgrid":
        preview["template_id"] = campaign.template_id
        preview["dynamic_template_data"] = template_data(message, campaign)
    elif email_channel is not None:
        preview.update(subject=message.subject, text=message.text, html=message.html)
    if output != "email":
        preview["message"] = subscription_message(message, campaign)
    return preview


async def _store(
    deps: NotifyDeps,
    conn: AnyConnection,
    request: RunRequest,
    run_id: str,
    campaign: Campaign,
    messages: Sequence[Message],
    email_channel: str | None,
    output: str,
) -> bool:
    """Write the run's notifications (and enqueue its NOTIFICATION messages) in the claim's
    transaction, then link the ledger rows to them. Whether deliveries were made."""
    repo = NotificationRepository(conn)
    now = request.now
    base = {
        "tenant": request.tenant,
        "job_id": campaign.job_id,
        "run_id": run_id,
        "notification_type": campaign.notification_type,
        "reason": None,
        "provider_message_id": None,
        "error": None,
        "attempts": 0,
        "lease_owner": None,
        "lease_until": None,
        "created_at": now,
        "updated_at": now,
    }
    rows: list[dict[str, Any]] = []
    channels = [c for c in (email_channel,) if c]
    enqueued = False
    if output != "email":
        channels.append(MESSAGE_CHANNEL)
        assert deps.enqueue_messages is not None  # checked before the run claims anything
        enqueued = await deps.enqueue_messages(
            conn,
            request.tenant,
            NOTIFICATION_ENTITY,
            "CREATE",
            [delivery_message(request.tenant, run_id, m, campaign) for m in messages],
        )
    for channel in channels:
        complete = channel in SENT_ON_CLAIM or channel == MESSAGE_CHANNEL
        rendered = channel in ("outbox", "smtp")
        for message in messages:
            rows.append(
                {
                    **base,
                    "customer_id": message.customer_id,
                    "recipient": message.recipient,
                    "customer": message.customer,
                    "channel": channel,
                    "status": "sent" if complete else "pending",
                    "items": message.items,
                    "subject": message.subject if rendered else None,
                    "text_body": message.text if rendered else None,
                    "html_body": message.html if rendered else None,
                    "sent_at": now if complete else None,
                }
            )
    ids = await repo.insert_notifications(rows)
    if channels:
        await repo.link_ledger(
            request.tenant,
            [
                (ledger_id, ids[(m.customer_id, channels[0])])
                for m in messages
                for ledger_id in m.ledger_ids
            ],
        )
    return enqueued


def delivery_message(
    tenant: str, run_id: str, message: Message, campaign: Campaign
) -> DeliveryMessage:
    """A customer's NOTIFICATION message for the delivery pipeline. Its id (in the body and
    the ``event_id`` attribute) is the same for every attempt of the run, for consumers to
    dedupe on."""
    message_id = f"notification:{campaign.job_id}:{run_id}:{message.customer_id}"
    body = {"id": message_id, **subscription_message(message, campaign)}
    return DeliveryMessage(
        body=to_json(body).decode(),
        attributes={
            "tenant": tenant,
            "entity_type": NOTIFICATION_ENTITY,
            "operation": "CREATE",
            "event_type": campaign.notification_type,
            "event_id": message_id,
        },
        ordering_key=f"{tenant}:{NOTIFICATION_ENTITY}:{message.customer_id}"[:MAX_ORDERING_KEY],
    )


def _channel(deps: NotifyDeps, sender: Sender, http: httpx.AsyncClient) -> EmailChannel:
    settings = deps.settings
    if sender.provider == "smtp":
        return SmtpChannel(
            sender,
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    return SendGridChannel(
        sender,
        http,
        api_url=settings.sendgrid_api_url,
        max_attempts=settings.sendgrid_max_attempts,
        backoff_seconds=deps.sendgrid_backoff_seconds,
    )


async def _send_pending(
    deps: NotifyDeps,
    sender: Sender,
    request: RunRequest,
    run_id: str,
    campaign: Campaign,
    channel_name: str,
) -> dict[str, int]:
    """Send the job's unsent notifications: this run's, and any a crashed run left (once its
    lease expired), recording each outcome batch before the next is sent."""
    owner = f"run:{run_id}:{uuid.uuid4().hex[:8]}"
    counts = {"sent": 0, "errors": 0, "skipped_out_of_stock_at_send": 0}
    http = deps.http or httpx.AsyncClient(timeout=deps.settings.sendgrid_timeout_seconds)
    try:
        channel = _channel(deps, sender, http)
        while True:
            now = request.now
            async with deps.db.write() as conn:
                leased = await NotificationRepository(conn).lease_pending(
                    request.tenant,
                    campaign.job_id,
                    channel_name,
                    owner=owner,
                    until=now + LEASE,
                    now=now,
                    limit=SEND_BATCH,
                )
            if not leased:
                return counts
            leased = await _recheck_stock(deps, request, campaign, leased, owner, counts)
            emails = [_outgoing(row, request.tenant, campaign) for row in leased]
            async for outcomes in channel.send(emails):
                await _record(deps, request, owner, outcomes, counts)
    finally:
        if deps.http is None:
            await http.aclose()


async def _recheck_stock(
    deps: NotifyDeps,
    request: RunRequest,
    campaign: Campaign,
    leased: list[RowMapping],
    owner: str,
    counts: dict[str, int],
) -> list[RowMapping]:
    """BACK_IN_STOCK: a notification whose items all sold out again since the run decided is
    skipped (DESIGN §6.3: stock is re-checked at send time)."""
    if campaign.notification_type != BACK_IN_STOCK:
        return leased
    async with deps.db.read() as conn:
        stock = await NotificationRepository(conn).available_stock(
            request.tenant, [item["product_id"] for row in leased for item in row["items"]]
        )
    keep: list[RowMapping] = []
    gone: list[RowMapping] = []
    for row in leased:
        in_stock = [
            i for i in row["items"] if stock.get(i["product_id"], 0) >= i["stock_threshold"]
        ]
        (keep if in_stock else gone).append(row)
    if gone:
        async with deps.db.write() as conn:
            repo = NotificationRepository(conn)
            await repo.record_outcome(
                request.tenant,
                [row["id"] for row in gone],
                owner,
                {"status": "skipped", "reason": "out_of_stock_at_send", "updated_at": request.now},
            )
            await repo.release_ledger(request.tenant, [row["id"] for row in gone])
        counts["skipped_out_of_stock_at_send"] += len(gone)
    return keep


def _outgoing(row: RowMapping, tenant: str, campaign: Campaign) -> OutgoingEmail:
    customer = row["customer"]
    message = Message(customer=customer, items=row["items"], claims=[])
    name = " ".join(part for part in (customer["first_name"], customer["last_name"]) if part)
    return OutgoingEmail(
        notification_id=row["id"],
        recipient=row["recipient"],
        recipient_name=name or None,
        subject=row["subject"],
        text=row["text_body"],
        html=row["html_body"],
        template_id=campaign.template_id,
        template_data=template_data(message, campaign),
        custom_args={
            "tenant": tenant,
            "job_id": campaign.job_id,
            "run_id": str(row["run_id"]),
            "notification_id": str(row["id"]),
        },
        categories=[campaign.notification_type],
    )


async def _record(
    deps: NotifyDeps,
    request: RunRequest,
    owner: str,
    outcomes: Sequence[SendOutcome],
    counts: dict[str, int],
) -> None:
    async with deps.db.write() as conn:
        repo = NotificationRepository(conn)
        alike: dict[tuple[bool, str | None, str | None], list[int]] = {}
        for outcome in outcomes:
            key = (outcome.sent, outcome.provider_message_id, outcome.error)
            alike.setdefault(key, []).append(outcome.notification_id)
        for (sent, provider_message_id, error), ids in alike.items():
            values: dict[str, Any] = {
                "status": "sent" if sent else "failed",
                "provider_message_id": provider_message_id,
                "error": error,
                "updated_at": request.now,
                "sent_at": request.now if sent else None,
            }
            await repo.record_outcome(request.tenant, ids, owner, values)
            counts["sent" if sent else "errors"] += len(ids)
        unsent = [o.notification_id for o in outcomes if not o.sent and o.certainly_unsent]
        if unsent:
            await repo.release_ledger(request.tenant, unsent)


# --- the notifications API ---------------------------------------------------------------


def _encode_cursor(value: int) -> str:
    return encode_seq_cursor("n:", value)


def _decode_cursor(cursor: str) -> int:
    return decode_seq_cursor(cursor, "n:")


def notification_to_api(row: RowMapping) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "job_id": row["job_id"],
        "run_id": row["run_id"],
        "notification_type": row["notification_type"],
        "customer_id": row["customer_id"],
        "recipient": row["recipient"],
        "channel": row["channel"],
        "status": row["status"],
        "reason": row["reason"],
        "items": row["items"],
        "provider_message_id": row["provider_message_id"],
        "error": row["error"],
        "attempts": row["attempts"],
        "subject": row["subject"],
        "text": row["text_body"],
        "html": row["html_body"],
        "created_at": row["created_at"],
        "sent_at": row["sent_at"],
    }


async def list_notifications(
    conn: AnyConnection,
    tenant: str,
    *,
    filters: Mapping[str, Any],
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    after = _decode_cursor(cursor) if cursor else None
    rows = await NotificationRepository(conn).list_notifications(
        tenant, filters=filters, after_id=after, limit=limit + 1
    )
    more = len(rows) > limit
    page = rows[:limit]
    return {
        "notifications": [notification_to_api(row) for row in page],
        "next_cursor": _encode_cursor(page[-1]["id"]) if more else None,
    }
