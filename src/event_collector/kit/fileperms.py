"""Files that hold data or keys are created owner-only (0600), whatever the umask.

SQLite creates its database file with 0644 (less the umask), and its ``-wal`` / ``-shm`` /
``-journal`` files with the mode of the database file: creating the (empty, valid) database file
ourselves with 0600 before SQLite opens it keeps all of them owner-only. An existing file keeps
the mode the operator gave it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy.engine import make_url

OWNER_ONLY_FILE = 0o600
OWNER_ONLY_DIR = 0o700


def create_owner_only_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; whether it was created. A missing
    directory is left for the caller's own error (nothing is created then)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY_FILE)
    except (FileExistsError, FileNotFoundError, NotADirectoryError):
        return False
    os.close(fd)
    return True


def make_owner_only_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (existing ones are left alone:
    ``Path.mkdir(parents=True)`` would create the parents with the umask's default)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a racing process created it
            directory.mkdir(mode=OWNER_ONLY_DIR)


def sqlite_file_of(database_url: str) -> Path | None:
    """The file an ``sqlite`` URL names (None: in memory, or a ``file:`` URI)."""
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def prepare_sqlite_file(database_url: str) -> None:
    """Create the SQLite database file owner-only before SQLite would create it world-readable."""
    path = sqlite_file_of(database_url)
    if path is not None:
        with contextlib.suppress(PermissionError):  # reported by the first connection
            create_owner_only_file(path)
