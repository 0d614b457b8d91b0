"""The webhook sink of the fan-out benchmarks: a bare ASGI app (no framework) under uvicorn.

``POST /hook`` answers 204 at once and records, per ``webhook-id`` header (the delivery id, the
same on a retry), the receive time and the event's ``received_at`` from the body, so that the
harness can tell deliveries that were lost (missing) or sent twice (duplicates) and the
end-to-end latency (stored by the API → received here). ``GET /stats?prefix=P`` returns the
counts and latency percentiles of the events whose id starts with ``P-`` (so that late deliveries
of an earlier phase do not count in the next one); ``POST /reset`` clears everything. Run with
``python -m uvicorn --app-dir bench sink:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

_seen: dict[str, tuple[float, str]] = {}  # delivery id → (received at, event id prefix)
_latencies: dict[str, list[float]] = {}  # event id prefix → end-to-end latencies (ms)
_total = 0
_bad = 0


def _reset() -> None:
    global _total, _bad
    _seen.clear()
    _latencies.clear()
    _total = 0
    _bad = 0


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def _stats(prefix: str | None) -> dict[str, Any]:
    times = [at for at, p in _seen.values() if prefix is None or p == prefix]
    latencies = (
        _latencies.get(prefix, [])
        if prefix is not None
        else [x for values in _latencies.values() for x in values]
    )
    return {
        "unique": len(times),
        "total": _total,
        "duplicates": _total - len(_seen),
        "unparsable": _bad,
        "first_at": min(times) if times else None,
        "last_at": max(times) if times else None,
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p99": _percentile(latencies, 99),
            "max": max(latencies) if latencies else None,
            "count": len(latencies),
        },
    }


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes = b"") -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _total, _bad
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    body = await _read_body(receive)
    if path == "/hook":
        now = time.time()
        _total += 1
        delivery_id = None
        for name, value in scope["headers"]:
            if name == b"webhook-id":
                delivery_id = value.decode()
                break
        if delivery_id is None or delivery_id in _seen:
            if delivery_id is None:
                _bad += 1
            await _answer(send, 204)
            return
        try:
            document = json.loads(body)
            prefix = str(document["id"]).split("-", 1)[0]
            received_at = document["received_at"]
            stored = datetime.fromisoformat(received_at.replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError, AttributeError):
            _bad += 1
            _seen[delivery_id] = (now, "")
        else:
            _seen[delivery_id] = (now, prefix)
            _latencies.setdefault(prefix, []).append((now - stored) * 1000)
        await _answer(send, 204)
    elif path == "/stats":
        query = scope.get("query_string", b"").decode()
        prefix = query.removeprefix("prefix=") if query.startswith("prefix=") else None
        await _answer(send, 200, json.dumps(_stats(prefix)).encode())
    elif path == "/reset":
        _reset()
        await _answer(send, 204)
    else:
        await _answer(send, 404)
