"""Load for the delivery scenarios: events posted in bursts or at a steady rate, and the
webhook sink that records what arrives."""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
from harness import (
    BENCH,
    BIN,
    LOAD_CPU,
    PAYLOAD_B64,
    Process,
    Tenant,
    free_port,
    wait_http,
)


def order_event(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "entity_id": f"o-{event_id}",
        "event_type": "ORDER",
        "event_source": "CONNECTOR",
        "event_payload": {
            "operation": "CREATE",
            "key_attributes": {"correlationId": event_id},
            "base64_encoded_payload_json": PAYLOAD_B64,
        },
    }


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client over asyncio streams: cheap enough to pace 2k
    requests/s from one core (httpx is not)."""

    def __init__(self, port: int, tenant: Tenant) -> None:
        self.port = port
        self.tenant = tenant
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> RawHttp:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def encode(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.tenant.token}\r\nX-TWC-Tenant: {self.tenant.name}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def post(self, path: str, body: bytes) -> int:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(self.encode(path, body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with suppress(Exception):
                await self.writer.wait_closed()


async def burst_ingest(
    ports: list[int], tenant: Tenant, count: int, prefix: str, connections_per_port: int = 4
) -> tuple[float, float, int]:
    """POST ``count`` events as batches of 500 as fast as the API takes them.
    Returns (start, end) wall-clock times and the number of non-200 answers."""
    batches = [
        json.dumps(
            [order_event(f"{prefix}-{i}") for i in range(start, min(count, start + 500))]
        ).encode()
        for start in range(0, count, 500)
    ]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    failures = 0

    async def sender(port: int) -> None:
        nonlocal failures
        conn = await RawHttp(port, tenant).open()
        try:
            while not queue.empty():
                batch = queue.get_nowait()
                if await conn.post("/api/v1/events/batch", batch) != 200:
                    failures += 1
        finally:
            await conn.close()

    start = time.time()
    await asyncio.gather(*(sender(p) for p in ports for _ in range(connections_per_port)))
    return start, time.time(), failures


async def paced_ingest(
    port: int, tenant: Tenant, rate: float, count: int, prefix: str, connections: int = 32
) -> tuple[float, float, int]:
    """POST ``count`` single events at a steady ``rate`` per second (open loop as long as a
    connection is free). Returns (start, end, failures)."""
    pool: asyncio.Queue[RawHttp] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await RawHttp(port, tenant).open())
    failures = 0
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def send(conn: RawHttp, body: bytes) -> None:
        nonlocal failures
        try:
            if await conn.post("/api/v1/events", body) != 201:
                failures += 1
        finally:
            pool.put_nowait(conn)

    start_wall, t0 = time.time(), loop.time()
    for i in range(count):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await pool.get()
        task = asyncio.create_task(send(conn, json.dumps(order_event(f"{prefix}-{i}")).encode()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    end_wall = time.time()
    while not pool.empty():
        await pool.get_nowait().close()
    return start_wall, end_wall, failures


class Sink:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = Process(
            f"sink-{self.port}",
            [
                str(BIN / "python"),
                "-m",
                "uvicorn",
                "--app-dir",
                str(BENCH),
                "sink:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--backlog",
                "4096",
            ],
            dict(os.environ),
            LOAD_CPU,
            workdir,
        )
        wait_http(f"http://127.0.0.1:{self.port}/stats", self.process)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        params = {"prefix": prefix} if prefix else None
        url = f"http://127.0.0.1:{self.port}/stats"
        return dict(httpx.get(url, params=params, timeout=10).json())

    def reset(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/reset", timeout=10)

    def wait_for(
        self, expected: int, timeout: float, prefix: str, stall: float = 30
    ) -> dict[str, Any]:
        """Poll until ``expected`` distinct deliveries arrived, nothing arrived for ``stall``
        seconds, or ``timeout``; then wait a little more to catch duplicates. Deliveries still
        missing then are reported as "undelivered" (lost, or only slow: see --fanout-timeout)."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            stats = self.stats(prefix)
            if stats["unique"] >= expected:
                time.sleep(1.0)
                return self.stats(prefix)
            if stats["unique"] != last_count:
                last_count, last_change = stats["unique"], time.monotonic()
            elif time.monotonic() - last_change > stall:
                break
            time.sleep(0.05)
        return self.stats(prefix)

    def stop(self) -> None:
        self.process.stop()


def subscribe(base_url: str, tenant: Tenant, sink: Sink, count: int = 2) -> None:
    for _ in range(count):
        response = httpx.post(
            f"{base_url}/api/v1/event-subscription",
            headers=tenant.headers,
            json={
                "entityType": "ORDER",
                "destination": {"type": "WEBHOOK", "webhook": {"url": sink.url}},
            },
        )
        if response.status_code != 201:
            raise RuntimeError(
                f"creating a subscription failed: {response.status_code} {response.text}"
            )
