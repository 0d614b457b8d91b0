"""Server-side SVG charts: hourly bars over the last 24 hours (no chart library, no script)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

HOURS = 24
WIDTH, HEIGHT, LEFT, BOTTOM = 720, 200, 40, 24


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    colour: str
    counts: Sequence[int]


def hourly(instants: Iterable[datetime], now: datetime) -> list[int]:
    """Counts per hour, oldest first; the last bucket is the hour ending now."""
    counts = [0] * HOURS
    start = now - timedelta(hours=HOURS)
    for instant in instants:
        index = int((instant - start) / timedelta(hours=1))
        if 0 <= index < HOURS:
            counts[index] += 1
    return counts


def stacked_bars(title: str, series: Sequence[Series], now: datetime) -> Mapping[str, object]:
    """What the ``_chart.html`` template draws: bars, axis labels, legend, a text summary."""
    totals = [sum(s.counts[h] for s in series) for h in range(HOURS)]
    peak = max([*totals, 1])
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM
    slot = plot_w / HOURS
    bars = []
    for hour in range(HOURS):
        y = float(plot_h)
        for s in series:
            value = s.counts[hour]
            if not value:
                continue
            height = plot_h * value / peak
            y -= height
            bars.append(
                {
                    "x": round(LEFT + hour * slot + 1, 1),
                    "y": round(y, 1),
                    "w": round(slot - 2, 1),
                    "h": round(height, 1),
                    "colour": s.colour,
                    "label": f"{s.label}: {value}",
                }
            )
    start = now - timedelta(hours=HOURS)
    ticks = [
        {
            "x": round(LEFT + hour * slot, 1),
            "text": (start + timedelta(hours=hour)).strftime("%H:00"),
        }
        for hour in range(0, HOURS, 6)
    ]
    return {
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "plot_h": plot_h,
        "peak": peak,
        "bars": bars,
        "ticks": ticks,
        "series": [{"label": s.label, "colour": s.colour, "total": sum(s.counts)} for s in series],
    }
