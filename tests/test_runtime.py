"""The runtime builder: what each process builds, and the order components start and stop in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from event_collector.kit.settings import Settings
from event_collector.runtime import Runtime


@dataclass
class Recorder:
    name: str
    log: list[str]
    fail_to_start: bool = False

    async def start(self) -> None:
        if self.fail_to_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_a_worker_runtime_builds_the_dispatcher_and_no_api(settings: Settings) -> None:
    runtime = Runtime.build(settings, api=False, dispatcher=True)
    try:
        assert runtime.dispatcher is not None
        with pytest.raises(RuntimeError, match="without the API"):
            _ = runtime.tokens
        with pytest.raises(RuntimeError, match="without the API"):
            _ = runtime.writer
        await runtime.start()
    finally:
        await runtime.stop()


async def test_components_stop_in_reverse_order(settings: Settings) -> None:
    log: list[str] = []
    runtime = Runtime.build(settings, api=True, dispatcher=False)
    assert runtime.dispatcher is None
    assert runtime.tokens.jwks["keys"]  # the API part: a token service with its signing keys
    runtime.add(Recorder("first", log))
    runtime.add(Recorder("second", log))
    await runtime.start()
    await runtime.stop()
    assert log == ["start first", "start second", "stop second", "stop first"]


async def test_a_failed_start_stops_only_what_started(settings: Settings) -> None:
    log: list[str] = []
    runtime = Runtime.build(settings, api=False, dispatcher=False)
    runtime.add(Recorder("first", log))
    runtime.add(Recorder("broken", log, fail_to_start=True))
    runtime.add(Recorder("never", log))
    with pytest.raises(RuntimeError, match="broken cannot start"):
        await runtime.start()
    await runtime.stop()
    assert log == ["start first", "stop first"]
