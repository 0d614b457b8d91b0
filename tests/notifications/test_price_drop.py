"""PRICE_DROP (DESIGN §6.3) and the common gates, evaluated by a real run on both databases."""

from __future__ import annotations

from event_collector.notifications.content import Renderer
from tests.notifications.helpers import Shop, job, notifications, run


async def _shop(client, tenant) -> Shop:
    shop = Shop(client, tenant)
    await shop.product("p1", link="https://shop.example/p1?ref=x#top")
    for variant in ("v1", "v2", "v3"):
        await shop.variant(variant)
        await shop.price(variant, "100.00")
    return shop


async def test_first_price_never_triggers_and_a_drop_sends_once_per_level(
    client, tenant, context
) -> None:
    shop = await _shop(client, tenant)
    await shop.shopper("c1", ["v1"])
    outcome = await run(context, tenant, job("PRICE_DROP"), run_id="r0")
    assert outcome.counts["skipped_not_triggered"] == 1
    assert outcome.counts["messages"] == 0

    await shop.price("v1", "100.00", "89.00")
    outcome = await run(context, tenant, job("PRICE_DROP"), run_id="r1")
    assert outcome.counts["messages"] == 1
    assert outcome.counts["sent"] == 1
    [sent] = await notifications(client, tenant, run_id="r1")
    assert sent["channel"] == "outbox"
    assert sent["status"] == "sent"
    assert sent["recipient"] == "c1@example.com"
    [item] = sent["items"]
    assert (item["old_price"], item["new_price"], item["saving"]) == ("100.00", "89.00", "11.00")
    assert "89.00" in sent["text"]
    assert "89.00" in sent["html"]
    assert sent["subject"]

    # A rerun, and a price that rises but stays below the threshold: nothing new.
    assert (await run(context, tenant, job("PRICE_DROP"), run_id="r2")).counts["messages"] == 0
    await shop.price("v1", "100.00", "89.50")
    outcome = await run(context, tenant, job("PRICE_DROP"), run_id="r3")
    assert outcome.counts["messages"] == 0
    assert outcome.counts["skipped_already_sent"] == 1
    # Back at the notified level: still nothing; a new lower level: one more.
    await shop.price("v1", "100.00", "89.00")
    assert (await run(context, tenant, job("PRICE_DROP"), run_id="r4")).counts["messages"] == 0
    await shop.price("v1", "100.00", "80.00")
    assert (await run(context, tenant, job("PRICE_DROP"), run_id="r5")).counts["messages"] == 1


async def test_thresholds_percent_and_amount(client, tenant, context) -> None:
    shop = await _shop(client, tenant)
    await shop.shopper("c1", ["v1", "v2"])
    await shop.price("v1", "100.00", "90.00")  # exactly 10 %: triggers
    await shop.price("v2", "100.00", "90.01")  # just under: does not
    outcome = await run(context, tenant, job("PRICE_DROP"), dry_run=True)
    [message] = outcome.messages
    assert [i["item_id"] for i in message["items"]] == ["c1-v1"]
    # min_drop_amount wins when it is larger than the percentage.
    outcome = await run(
        context, tenant, job("PRICE_DROP", min_drop_amount=15, min_drop_percent=1), dry_run=True
    )
    assert outcome.messages == []
    outcome = await run(
        context, tenant, job("PRICE_DROP", min_drop_amount=5, min_drop_percent=5), dry_run=True
    )
    assert [i["item_id"] for i in outcome.messages[0]["items"]] == ["c1-v1", "c1-v2"]


async def test_amounts_have_the_currencys_minor_units(client, tenant, context) -> None:
    """As the read API shows them (kit.money): 500 JPY is "500", never "500.00"."""
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "1000", currency="JPY")
    await shop.shopper("c1", ["v1"])
    await shop.price("v1", "1000", "500", currency="JPY")
    await run(context, tenant, job("PRICE_DROP"), run_id="r1")
    [sent] = await notifications(client, tenant, run_id="r1")
    [item] = sent["items"]
    assert (item["old_price"], item["new_price"], item["saving"]) == ("1000", "500", "500")
    assert "500 JPY (was 1000, you save 500)" in sent["text"]
    assert "500.00" not in sent["text"] + sent["html"]


async def test_currency_mismatch_is_no_drop(client, tenant, context) -> None:
    shop = await _shop(client, tenant)
    await shop.shopper("c1", ["v1"])
    await shop.post("PRICE", {"productVariantId": "v1", "currencyCode": "AUD", "active": False})
    await shop.price("v1", "10.00", currency="USD")
    outcome = await run(context, tenant, job("PRICE_DROP"), dry_run=True)
    assert outcome.messages == []
    assert outcome.counts["skipped_currency_mismatch"] == 1


async def test_items_sorted_by_percent_drop_capped_and_one_message_per_customer(
    client, tenant, context
) -> None:
    shop = await _shop(client, tenant)
    await shop.shopper("c1", ["v1", "v2"])
    await shop.wishlist("w-c1-second", "c1")
    await shop.item("c1-v3", "w-c1-second", "v3")
    await shop.price("v1", "100.00", "85.00")
    await shop.price("v2", "100.00", "50.00")
    await shop.price("v3", "100.00", "70.00")
    outcome = await run(context, tenant, job("PRICE_DROP"), dry_run=True)
    [message] = outcome.messages
    assert [i["item_id"] for i in message["items"]] == ["c1-v2", "c1-v3", "c1-v1"]
    outcome = await run(context, tenant, job("PRICE_DROP", items=2), dry_run=True)
    assert [i["item_id"] for i in outcome.messages[0]["items"]] == ["c1-v2", "c1-v3"]
    assert outcome.counts["items_over_cap"] == 1


async def test_hard_cap_applies_to_the_whole_wishlist(client, tenant, context) -> None:
    shop = await _shop(client, tenant)
    await shop.shopper("c1", ["v1", "v2", "v3"])
    for variant in ("v1", "v2", "v3"):
        await shop.price(variant, "100.00", "50.00")
    capped = context.settings.model_copy(update={"notify_max_items": 2})
    outcome = await run(context, tenant, job("PRICE_DROP", items=-1), dry_run=True, settings=capped)
    assert len(outcome.messages[0]["items"]) == 2
    outcome = await run(context, tenant, job("PRICE_DROP", items=10), dry_run=True, settings=capped)
    assert len(outcome.messages[0]["items"]) == 2
    outcome = await run(context, tenant, job("PRICE_DROP", items=-1), dry_run=True)
    assert len(outcome.messages[0]["items"]) == 3


async def test_gates_and_counts_per_reason(client, tenant, context) -> None:
    shop = await _shop(client, tenant)
    await shop.shopper("yes", ["v1"])
    await shop.shopper("no", ["v1"], consent=False)
    await shop.shopper("absent", ["v1"], consent=None)
    await shop.shopper("legacy", ["v1"], consent=None, accepts_marketing=True)
    await shop.shopper("optout", ["v1"], consent=False, accepts_marketing=True)
    await shop.shopper("noemail", ["v1"], email=None)
    await shop.shopper("gone", ["v1"])
    await shop.post("CUSTOMER", {"id": "gone"}, "DELETE")
    await shop.shopper("bought", ["v1"])
    await shop.item("bought-v1", "w-bought", "v1", purchased=True)
    await shop.shopper("muted", ["v1"])
    await shop.item("muted-v1", "w-muted", "v1", disableNotification=True)
    await shop.shopper("deleted", ["v1"])
    await shop.post("WISHLIST_ITEM", {"id": "deleted-v1"}, "DELETE")
    await shop.shopper("disabled", ["v2"])
    await shop.variant("v2", disabled=True)
    await shop.shopper("unknown", ["v9"])
    for variant in ("v1", "v2", "v9"):
        await shop.price(variant, "100.00", "50.00")
    outcome = await run(context, tenant, job("PRICE_DROP"), dry_run=True)
    assert sorted(m["customer_id"] for m in outcome.messages) == ["legacy", "yes"]
    counts = outcome.counts
    assert counts["skipped_no_consent"] == 3
    assert counts["skipped_no_email"] == 1
    assert counts["skipped_customer_deleted"] == 1
    assert counts["skipped_purchased"] == 1
    assert counts["skipped_notification_disabled"] == 1
    assert counts["skipped_item_deleted"] == 1
    assert counts["skipped_product_unavailable"] == 1
    assert counts["skipped_product_unknown"] == 1
    assert counts["items_eligible"] == 2
    assert counts["items_considered"] == 12


async def test_links_get_utm_keeping_query_and_fragment_and_fall_back_to_product(
    client, tenant, context
) -> None:
    shop = await _shop(client, tenant)
    await shop.variant("v1", link="https://shop.example/v1?color=red&utm_source=old#size")
    await shop.variant("v2", link=None, title=None)
    await shop.shopper("c1", ["v1", "v2"])
    await shop.price("v1", "100.00", "50.00")
    await shop.price("v2", "100.00", "60.00")
    outcome = await run(context, tenant, job("PRICE_DROP"), dry_run=True)
    links = {i["item_id"]: i["link"] for i in outcome.messages[0]["items"]}
    assert links["c1-v1"] == (
        "https://shop.example/v1?color=red&utm_source=event-collector&utm_medium=email"
        "&utm_campaign=spring#size"
    )
    assert links["c1-v2"] == (
        "https://shop.example/p1?ref=x&utm_source=event-collector&utm_medium=email"
        "&utm_campaign=spring#top"
    )
    titles = {i["item_id"]: i["title"] for i in outcome.messages[0]["items"]}
    assert titles["c1-v2"] == "Product p1"


async def test_dry_run_records_nothing_and_matches_the_real_run(client, tenant, context) -> None:
    shop = await _shop(client, tenant)
    await shop.shopper("c1", ["v1"])
    await shop.price("v1", "100.00", "50.00")
    preview = await run(context, tenant, job("PRICE_DROP"), dry_run=True)
    again = await run(context, tenant, job("PRICE_DROP"), dry_run=True)
    assert preview.messages == again.messages
    assert len(preview.messages) == 1
    assert await notifications(client, tenant) == []
    await run(context, tenant, job("PRICE_DROP"), run_id="real")
    [stored] = await notifications(client, tenant)
    [previewed] = preview.messages
    assert (stored["subject"], stored["text"], stored["html"], stored["items"]) == (
        previewed["subject"],
        previewed["text"],
        previewed["html"],
        previewed["items"],
    )


async def test_html_is_escaped(client, tenant, context) -> None:
    shop = await _shop(client, tenant)
    await shop.variant("v1", title="<script>alert(1)</script>")
    await shop.shopper("c1", ["v1"], firstName="<b>Eve</b>")
    await shop.price("v1", "100.00", "50.00")
    [message] = (await run(context, tenant, job("PRICE_DROP"), dry_run=True)).messages
    assert "<script>" not in message["html"]
    assert "&lt;script&gt;" in message["html"]
    assert "<b>Eve" not in message["html"]
    assert "<script>alert(1)</script>" in message["text"]


async def test_templates_directory_overrides_by_type_and_template_id(
    client, tenant, context, tmp_path
) -> None:
    shop = await _shop(client, tenant)
    await shop.shopper("c1", ["v1"])
    await shop.price("v1", "100.00", "50.00")
    (tmp_path / "price_drop.subject").write_text("Cheaper: {{ items[0].title }}")
    (tmp_path / "spring-sale.subject").write_text("Spring sale for {{ customer.first_name }}")
    (tmp_path / "spring-sale.html").write_text("<p>{{ customer.first_name }}</p>")
    renderer = Renderer(tmp_path)
    [by_type] = (
        await run(context, tenant, job("PRICE_DROP"), dry_run=True, renderer=renderer)
    ).messages
    assert by_type["subject"] == "Cheaper: Title v1"
    assert "Good news" in by_type["text"]  # not overridden: the built-in one
    chosen = job("PRICE_DROP", template_id="spring-sale")
    [by_id] = (await run(context, tenant, chosen, dry_run=True, renderer=renderer)).messages
    assert by_id["subject"] == "Spring sale for c1"
    assert by_id["html"] == "<p>c1</p>"
