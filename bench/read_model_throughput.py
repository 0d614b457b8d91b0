"""Ingest throughput with read-model events vs plain events, against a real server.

Starts `event-collector serve` on loopback (fresh SQLite file, or PostgreSQL with --postgres),
creates a tenant and client, then alternates rounds of N concurrent single-event POSTs:
  plain  ORDER events (no read-model effect)
  rm     a mix of WISHLIST_ITEM creates, PRICE updates and INVENTORY_LEVEL updates
and prints events/s per kind and the slowdown of read-model events.

    .venv/bin/python bench/read_model_throughput.py [--events 2000] [--concurrency 32]
        [--rounds 3] [--batch 100]
        [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/ec_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

CLI = str(Path(sys.executable).with_name("event-collector"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _event(event_type: str, operation: str, payload: Any, entity_id: str) -> dict[str, Any]:
    return {
        "id": f"ev-{uuid.uuid4().hex}",
        "entity_id": entity_id,
        "event_type": event_type,
        "event_source": "CONNECTOR",
        "event_payload": {
            "operation": operation,
            "entity_id": entity_id,
            "base64_encoded_payload_json": _b64(payload),
        },
    }


VARIANTS = [f"var-{i}" for i in range(300)]


def plain_event(rng: random.Random) -> dict[str, Any]:
    order = f"ord-{uuid.uuid4().hex[:10]}"
    payload = {
        "id": order,
        "orderRef": order.upper(),
        "customerId": "c-1",
        "total": str(rng.randint(10, 500)),
        "currencyCode": "AUD",
        "entries": [{"productVariantId": rng.choice(VARIANTS), "quantity": 1}],
    }
    return _event("ORDER", "CREATE", payload, order)


def read_model_event(rng: random.Random) -> dict[str, Any]:
    variant = rng.choice(VARIANTS)
    kind = rng.randrange(3)
    if kind == 0:
        item = f"wi-{uuid.uuid4().hex[:10]}"
        payload = {
            "id": item,
            "wishlistId": f"wl-{rng.randrange(100)}",
            "notifyMe": True,
            "product": {"productId": "prod-1", "selectedVariantId": variant},
            "createdTime": "2024-05-01T00:00:00.000000Z",
        }
        return _event("WISHLIST_ITEM", "CREATE", payload, item)
    if kind == 1:
        payload = {
            "productVariantId": variant,
            "currencyCode": "AUD",
            "price": f"{rng.randint(20, 99)}.95",
            "salePrice": str(rng.randint(10, 60)),
        }
        return _event("PRICE", "UPDATE", payload, f"price-{variant}")
    payload = {
        "productVariantId": variant,
        "locationId": f"loc-{rng.randrange(3)}",
        "stockOnHand": str(rng.randint(0, 12)),
        "reserved": rng.randint(0, 2),
    }
    return _event("INVENTORY_LEVEL", "UPDATE", payload, f"lvl-{variant}")


async def _round(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    events: list[dict[str, Any]],
    concurrency: int,
    batch: int = 0,
) -> float:
    if batch:
        queue: list[Any] = [events[i : i + batch] for i in range(0, len(events), batch)][::-1]
    else:
        queue = list(reversed(events))

    async def worker() -> None:
        while queue:
            body = queue.pop()
            path = "/api/v1/events/batch" if batch else "/api/v1/events"
            response = await http.post(path, json=body, headers=headers)
            ok = (
                response.status_code == 200 and response.json()["created"] == len(body)
                if batch
                else response.status_code == 201
            )
            if not ok:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(events) / (time.perf_counter() - started)


async def bench(base: str, headers: dict[str, str], args: argparse.Namespace) -> None:
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        # Warm up (and give the read model products/variants to point at).
        warm = [
            _event(
                "VARIANT_PRODUCT",
                "CREATE",
                {"id": v, "productRef": v.upper(), "baseProductId": "prod-1"},
                v,
            )
            for v in VARIANTS
        ]
        warm += [plain_event(rng) for _ in range(200)]
        await _round(http, headers, warm, args.concurrency)
        results: dict[str, list[float]] = {"plain": [], "rm": []}
        for _ in range(args.rounds):
            for kind, make in (("plain", plain_event), ("rm", read_model_event)):
                events = [make(rng) for _ in range(args.events)]
                rate = await _round(http, headers, events, args.concurrency, args.batch)
                results[kind].append(rate)
                print(f"  {kind:5} {rate:8.0f} events/s", flush=True)
    plain, rm = statistics.median(results["plain"]), statistics.median(results["rm"])
    print(
        f"median plain {plain:.0f} ev/s, read-model {rm:.0f} ev/s, "
        f"read-model slower by {100 * (1 - rm / plain):.1f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="post through /api/v1/events/batch, this many events per request",
    )
    parser.add_argument("--postgres", default=None, help="a postgresql+asyncpg:// URL")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ec-bench-"))
    port = _free_port()
    env = {
        **os.environ,
        "EC_DATABASE_URL": args.postgres or f"sqlite+aiosqlite:///{workdir}/bench.db",
        "EC_KEY_DIR": str(workdir / "keys"),
        "EC_BOOTSTRAP_DEMO": "false",
        "EC_AUTO_MIGRATE": "true",
        "EC_LOG_LEVEL": "WARNING",
    }
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    subprocess.run([CLI, "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([CLI, "tenant", "create", tenant], env=env, check=True, capture_output=True)
    issued = json.loads(
        subprocess.run(
            [CLI, "client", "create", tenant, "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    server = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        token = httpx.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": issued["client_id"],
                "client_secret": issued["client_secret"],
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "X-TWC-Tenant": tenant}
        mode = f"batches of {args.batch}" if args.batch else "single posts"
        print(
            f"database: {'postgres' if args.postgres else 'sqlite'}; {args.events} events per "
            f"round as {mode}, concurrency {args.concurrency}, {args.rounds} rounds"
        )
        asyncio.run(bench(base, headers, args))
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
