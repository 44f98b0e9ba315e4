"""The pipeline's progress bars: tqdm's, on a terminal only, cleared when done."""

from __future__ import annotations

from tqdm import tqdm


class _Bar(tqdm):
    """A bar without tqdm's monitor thread, which tqdm starts with its first bar and, when the bar is
    hidden (no terminal: cron, the tests), never stops: a process with another thread does not fork
    (see ``site.beside``), so a site build in a process that had run the pipeline (as the tests run
    both) would do all its work in that one process."""

    monitor_interval = 0


def progress_bar(desc: str, unit: str, total: int | None = None) -> tqdm:
    return _Bar(total=total, desc=desc, unit=unit, disable=None, leave=False)
