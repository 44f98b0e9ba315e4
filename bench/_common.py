"""Shared plumbing for the benches: a throwaway user folder, the real CLI timed, tables.

Why: every bench must drive the product the way a user does (``python -m arxiv_digest -c ...``
in a subprocess, so timings include interpreter start-up), against the loopback servers of the
test suite, and report figures in one consistent format. The user folder is the tests' own
``Workspace`` (tests/support/workspace.py). Import this module before anything from ``tests`` --
it puts the repository root on ``sys.path``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from arxiv_digest.window import window_for  # noqa: E402
from tests.support import workspace  # noqa: E402
from tests.support.arxiv_server import ArxivServer, FakePaper  # noqa: E402

NOW_ISO = workspace.NOW  # every bench date's window has closed by then (as in the tests)
NOW = datetime.fromisoformat(NOW_ISO)
TIMEZONE, ANCHOR = "Asia/Shanghai", "08:50"  # the product's default window
CATEGORIES = ("cs.SD", "eess.AS")  # the product's default categories
USER_AGENT = "arxiv-digest-bench/1.0 (mailto:bench@example.org)"

T = TypeVar("T")


# --------------------------------------------------------------------------- running the product


@dataclass(frozen=True)
class Run:
    """One CLI invocation: its wall time (as the user waits for it) and what it printed."""

    seconds: float
    stdout: str
    stderr: str

    @property
    def closing(self) -> dict[str, int]:
        """Numbers from the closing line: fetched, shown, requests, llm_calls, cached (absent = 0)."""
        patterns = {
            "fetched": r"fetched (\d+)",
            "shown": r"shown (\d+)",
            "requests": r"(\d+) arXiv requests?",
            "llm_calls": r"LLM (\d+) calls?",
            "cached": r"(\d+) cached",
        }
        found = {name: re.search(pattern, self.stdout) for name, pattern in patterns.items()}
        return {name: int(m.group(1)) if m else 0 for name, m in found.items()}


class Workspace(workspace.Workspace):
    """The tests' user folder; its CLI runs are separate processes, timed as the user waits for them."""

    def timed(self, *args: str, timeout: float = 120) -> Run:
        """``python -m arxiv_digest -c config.yaml ARGS`` with the clock pinned; fails loudly on a non-zero exit."""
        done, seconds = timed(lambda: self.run(*args, now=NOW_ISO, timeout=timeout))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return Run(seconds, done.stdout, done.stderr)

    def generate(self, first: date, last: date | None = None) -> Run:
        """``generate --date D`` or ``generate --from A --to B``."""
        if last is None or last == first:
            return self.timed("generate", "--date", first.isoformat())
        return self.timed("generate", "--from", first.isoformat(), "--to", last.isoformat())


@dataclass(frozen=True)
class FetchRun:
    """What one ``generate`` cost against the fake arXiv API."""

    requests: int  # as counted by the server, and checked against the CLI's closing line
    seconds: float
    papers: int  # "fetched" from the closing line


def fetch_run(server: ArxivServer, ws: Workspace, first: date, last: date | None = None) -> FetchRun:
    """Run ``generate`` for a date or range and count the API requests the server saw during it."""
    before = len(server.api_requests())
    run = ws.generate(first, last)
    requests = len(server.api_requests()) - before
    if run.closing["requests"] != requests:
        raise AssertionError(f"the CLI reports {run.closing['requests']} requests, the server saw {requests}")
    return FetchRun(requests, run.seconds, run.closing["fetched"])


def bench_settings(arxiv: ArxivServer, *, page_size: int = 200) -> dict[str, dict[str, Any]]:
    """The bench baseline: no pacing or backoff (we measure the product, not arXiv's etiquette), no full text."""
    return {
        "arxiv": {
            "api_url": arxiv.url,
            "request_interval": 0,
            "backoff": 0,
            "page_size": page_size,
            "user_agent": USER_AGENT,
        },
        "fulltext": {"enabled": False, "html_url": f"{arxiv.base}/html", "pdf_url": f"{arxiv.base}/pdf"},
        "llm": {"provider": "none", "backoff": 0},
    }


@contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards (set BENCH_KEEP=1 to keep it for a look)."""
    root = Path(tempfile.mkdtemp(prefix=f"arxiv-digest-bench-{name}-"))
    try:
        yield root
    finally:
        if os.environ.get("BENCH_KEEP"):
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def arxiv_server(papers: Iterable[FakePaper]) -> ArxivServer:
    """The loopback arXiv API, its clock pinned to the bench's "now" so every paper is announced."""
    return ArxivServer(papers, now=lambda: NOW)


def timed(func: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = func()
    return result, time.perf_counter() - started


def startup_seconds(runs: int = 3) -> float:
    """Fastest ``python -m arxiv_digest --version``: the floor under every CLI timing."""
    command = [sys.executable, "-m", "arxiv_digest", "--version"]
    return min(timed(lambda: subprocess.run(command, capture_output=True, check=True))[1] for _ in range(runs))


# --------------------------------------------------------------------------- what an ideal fetcher would need


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def papers_per_day(papers: Sequence[FakePaper], days: Sequence[date]) -> dict[date, int]:
    """Papers in each day's window (default zone/anchor/categories), as the fake API would match them."""
    counts = {}
    for day in days:
        window = window_for(day, TIMEZONE, ANCHOR)
        counts[day] = sum(
            1 for p in papers if window.start <= p.published < window.end and set(CATEGORIES) & set(p.categories)
        )
    return counts


def check_papers(label: object, got: int, want: int) -> None:
    """The bench is only meaningful if the product fetched exactly what the fixture holds."""
    if got != want:
        raise AssertionError(f"{label}: the CLI fetched {got} papers, the fixture has {want}")


def ideal_paged(papers: int, page_size: int) -> int:
    """One query over the whole span: ceil(papers / page_size), and at least one request."""
    return max(1, math.ceil(papers / page_size))


def per_day_requests(counts: dict[date, int], page_size: int) -> int:
    """One query per day: at least one request each day, more when a day overflows a page."""
    return sum(ideal_paged(n, page_size) for n in counts.values())


# --------------------------------------------------------------------------- reporting


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "n/a"


def table(title: str, rows: Sequence[Sequence[object]], header: Sequence[str] = ("figure", "value", "note")) -> None:
    """Print ``rows`` as aligned columns under ``title``."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
