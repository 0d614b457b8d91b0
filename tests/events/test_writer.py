"""The group-commit writer: every submitted event is written without waiting for another
request to come along."""

from __future__ import annotations

import asyncio

from event_collector.events.model import NewEvent
from event_collector.events.schemas import EventIn
from event_collector.events.writer import Outcome
from event_collector.kit.db import utcnow
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.factories import event_body


async def test_a_request_woken_by_one_group_and_submitting_again_is_not_stranded(
    tenant: TenantFixture, context: Runtime
) -> None:
    # Clients that post again as soon as their answer arrives submit while the flusher that
    # answered them is finishing: a flusher counted as running after its last look at the
    # queue left those submissions waiting for the next request to arrive (forever, if none).
    async def client_posting_in_sequence(posts: int) -> list[Outcome]:
        outcomes = []
        for _ in range(posts):
            event = NewEvent.from_input(tenant.name, EventIn.model_validate(event_body()), utcnow())
            (result,) = await context.writer.submit([event])
            outcomes.append(result.outcome)
        return outcomes

    results = await asyncio.wait_for(
        asyncio.gather(*(client_posting_in_sequence(3) for _ in range(4))), timeout=20
    )
    assert [outcome for outcomes in results for outcome in outcomes] == [Outcome.CREATED] * 12
