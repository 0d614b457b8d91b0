"""Running the command line as an operator does: a subprocess in a directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    cwd: Path, *args: str, columns: int = 80, **env: str
) -> subprocess.CompletedProcess[str]:
    """``event-collector *args`` in ``cwd`` with no EC_* settings but ``env``, on a terminal
    ``columns`` wide (what it prints must not wrap, nor ids break, even on a narrow one)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    environment.update(env)
    environment["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "event_collector", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
