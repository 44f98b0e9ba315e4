"""One run at a time per store: an advisory ``flock`` on a file beside the database.

The kernel drops the lock when the process dies (even on ``kill -9``), so a crashed run never
blocks the next one; a second run while one is alive fails at once with a clear message.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .errors import DigestError, ExitCode


class AlreadyRunning(DigestError):
    exit_code = ExitCode.LOCKED


@contextmanager
def run_lock(store_path: Path) -> Iterator[None]:
    path = store_path.with_name(store_path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise AlreadyRunning(f"another arxiv-digest run is in progress ({holder}); try again later") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
