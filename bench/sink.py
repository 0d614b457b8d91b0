"""The webhook sink of the fan-out benchmarks: a bare ASGI app (no framework) under uvicorn.

``POST /hook`` answers 204 at once and records, per ``webhook-id`` header (the delivery id, the
same on a retry), the receive time and the event's ``received_at`` from the body, so that the
harness can tell deliveries that were lost (missing) or sent twice (duplicates) and the
end-to-end latency (stored by the API → received here). ``GET /stats`` returns the counts and
latency percentiles; ``POST /reset`` clears them. Run with
``python -m uvicorn --app-dir bench sink:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

_seen: dict[str, float] = {}
_latencies: list[float] = []
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


def _stats() -> dict[str, Any]:
    times = list(_seen.values())
    return {
        "unique": len(_seen),
        "total": _total,
        "duplicates": _total - len(_seen),
        "unparsable": _bad,
        "first_at": min(times) if times else None,
        "last_at": max(times) if times else None,
        "latency_ms": {
            "p50": _percentile(_latencies, 50),
            "p99": _percentile(_latencies, 99),
            "max": max(_latencies) if _latencies else None,
            "count": len(_latencies),
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
        _seen[delivery_id] = now
        try:
            received_at = json.loads(body)["received_at"]
            stored = datetime.fromisoformat(received_at.replace("Z", "+00:00")).timestamp()
            _latencies.append((now - stored) * 1000)
        except (ValueError, KeyError, TypeError, AttributeError):
            _bad += 1
        await _answer(send, 204)
    elif path == "/stats":
        await _answer(send, 200, json.dumps(_stats()).encode())
    elif path == "/reset":
        _reset()
        await _answer(send, 204)
    else:
        await _answer(send, 404)
