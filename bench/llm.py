"""LLM bench: does the LLM stage keep ``llm.concurrency`` calls in flight, and is a cached rerun free?

Why: with a real provider each call takes seconds, so the LLM stage dominates a run. 40 papers need
80 calls (translation + explainer); with L seconds per call and concurrency C the floor is
ceil(80 / C) x L. The product should come within 15% of it, run strictly one-at-a-time at C = 1,
and regenerate a fully cached date with no LLM call and no arXiv request in under a second.

The LLM stage is measured three ways: CLI wall time minus a no-LLM run of the same date, the span
the loopback server saw (first call in .. last call out), and ``Digest.fill_texts`` in-process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from _common import (
    NOW,
    Run,
    Workspace,
    arxiv_server,
    bench_settings,
    ratio,
    scratch,
    seconds,
    startup_seconds,
    table,
    timed,
)

from arxiv_digest.config import load_config
from arxiv_digest.pipeline import Digest
from tests.llm_script import Script
from tests.support.arxiv_server import ArxivServer, make_paper
from tests.support.llm_server import LLMServer

PAPERS = 40
CALLS = 2 * PAPERS  # a translation and an explainer each
LATENCY = 0.25
CONCURRENCY = 4
TARGET_RATIO = 1.15
DAY = date(2026, 1, 15)  # window [2026-01-14 00:50Z, 2026-01-15 00:50Z)
FIRST_PUBLISHED = datetime(2026, 1, 14, 1, 0, tzinfo=UTC)
KEY_ENV, KEY = "BENCH_LLM_API_KEY", "sk-bench-0123456789"


def ideal(concurrency: int) -> float:
    return math.ceil(CALLS / concurrency) * LATENCY


@dataclass(frozen=True)
class LLMRun:
    """One ``generate`` with the LLM on, in a fresh folder."""

    ws: Workspace
    wall: float  # as the user waits for it
    span: float  # first call in .. last answer out, seen by the server
    peak: int  # most calls the server had in flight at once


class Bench:
    """The two loopback servers and a fresh user folder per measurement."""

    def __init__(self, root: Path, arxiv: ArxivServer, llm: LLMServer) -> None:
        self.root, self.arxiv, self.llm = root, arxiv, llm

    def workspace(self, name: str, concurrency: int | None) -> Workspace:
        """A fresh folder (own store); ``concurrency`` None means the LLM is off."""
        ws = Workspace(self.root / name, env={KEY_ENV: KEY}).configure(**bench_settings(self.arxiv))
        if concurrency is not None:
            ws.configure(
                llm={
                    "provider": "openai",
                    "base_url": self.llm.base_url,
                    "api_key_env": KEY_ENV,
                    "concurrency": concurrency,
                    "retries": 0,  # every answer is valid: a retry would be a bug worth seeing
                }
            )
        return ws

    def llm_run(self, concurrency: int, attempt: int = 1) -> LLMRun:
        """Generate the date on a fresh store; check every call was made once."""
        ws = self.workspace(f"concurrency-{concurrency}-{attempt}", concurrency)
        since = len(self.llm.requests)
        self.llm.max_in_flight = 0
        run = ws.generate(DAY)
        calls = len(self.llm.requests) - since
        if run.closing["llm_calls"] != CALLS or calls != CALLS:
            raise AssertionError(f"concurrency {concurrency}: {calls} calls, expected {CALLS}\n{run.stdout}")
        arrivals = [r.time for r in self.llm.requests[since:]]  # time.monotonic() at arrival
        return LLMRun(ws, run.seconds, max(arrivals) + LATENCY - min(arrivals), self.llm.max_in_flight)

    def best_llm_run(self, concurrency: int, runs: int) -> LLMRun:
        """Fastest of ``runs`` (each on a fresh store): a 2-core machine adds noise, never speed."""
        return min((self.llm_run(concurrency, n) for n in range(1, runs + 1)), key=lambda r: r.wall)

    def baseline(self, runs: int = 3) -> float:
        """Fastest no-LLM ``generate`` of the same date on a fresh store: fetch, render, start-up."""
        return min(self.workspace(f"baseline-{n}", None).generate(DAY).seconds for n in range(runs))

    def cached_rerun(self, ws: Workspace) -> tuple[Run, int, int]:
        """Delete the post and generate again: (run, LLM calls, arXiv requests) -- both must be zero."""
        ws.post(DAY).unlink()
        llm_before, arxiv_before = len(self.llm.requests), len(self.arxiv.requests)
        run = ws.generate(DAY)
        llm_calls, arxiv_requests = len(self.llm.requests) - llm_before, len(self.arxiv.requests) - arxiv_before
        if llm_calls or arxiv_requests or not ws.post(DAY).exists():
            raise AssertionError(f"cached rerun: {llm_calls} LLM calls, {arxiv_requests} arXiv requests")
        return run, llm_calls, arxiv_requests


@contextmanager
def in_process_digest(ws: Workspace) -> Iterator[Digest]:
    """The product's ``Digest`` on ``ws``'s config, in this process (the key set in its environment)."""
    os.environ[KEY_ENV] = KEY
    digest = Digest(load_config(ws.config), now=lambda: NOW)
    try:
        yield digest
    finally:
        digest.close()
        del os.environ[KEY_ENV]


def in_process_generate(ws: Workspace) -> float:
    """``Digest.generate`` on a fresh store: the CLI's work minus interpreter start-up and imports."""
    with in_process_digest(ws) as digest:
        return timed(lambda: digest.generate([DAY]))[1]


def in_process_fill_texts(ws: Workspace) -> float:
    """``Digest.fill_texts`` alone on a fresh store (fetched first, untimed): the LLM stage and nothing else."""
    with in_process_digest(ws) as digest:
        digest.fetch([digest.window(DAY)])
        papers = [entry.paper for entry in digest.posts.post_for(digest.window(DAY))[0].entries]
        if len(papers) != PAPERS:
            raise AssertionError(f"{len(papers)} papers in the window, expected {PAPERS}")
        (usage, fatal), elapsed = timed(lambda: digest.fill_texts(papers))
    if fatal or usage.calls != CALLS:
        raise AssertionError(f"fill_texts made {usage.calls} calls, expected {CALLS} (fatal: {fatal})")
    return elapsed


def main() -> None:
    papers = [make_paper(f"2601.{n:05d}", FIRST_PUBLISHED + timedelta(minutes=n)) for n in range(1, PAPERS + 1)]
    with (
        arxiv_server(papers) as arxiv,
        LLMServer(Script(), latency=LATENCY, api_key=KEY) as llm,
        scratch("llm") as root,
    ):
        bench = Bench(root, arxiv, llm)
        startup = startup_seconds()
        baseline = bench.baseline()
        fast, slow = bench.best_llm_run(CONCURRENCY, runs=2), bench.llm_run(1)
        cached, llm_calls, arxiv_requests = bench.cached_rerun(fast.ws)
        generate_in_process = in_process_generate(bench.workspace("generate-in-process", CONCURRENCY))
        fill = in_process_fill_texts(bench.workspace("fill-in-process", CONCURRENCY))

    stage, slow_stage = fast.wall - baseline, slow.wall - baseline
    floor, slow_floor = ideal(CONCURRENCY), ideal(1)
    table(
        f"llm: generate --date {DAY}, {PAPERS} papers = {CALLS} calls, latency {LATENCY} s, full text off",
        [
            ("process start-up", seconds(startup), "python -m arxiv_digest --version"),
            ("no-LLM baseline", seconds(baseline), "same date, fresh store: fetch + render; best of 3"),
            (f"wall, concurrency {CONCURRENCY}", seconds(fast.wall), f"best of 2; peak {fast.peak} calls in flight"),
            (
                "LLM stage = wall - baseline",
                seconds(stage),
                f"ideal ceil({CALLS}/{CONCURRENCY}) x {LATENCY} = {seconds(floor)}",
            ),
            ("stage / ideal", ratio(stage, floor), f"target <= {TARGET_RATIO:.2f}x"),
            ("LLM span at the server", seconds(fast.span), f"{ratio(fast.span, floor)} of ideal"),
            ("fill_texts in-process", seconds(fill), f"{ratio(fill, floor)} of ideal"),
            (
                "generate in-process",
                seconds(generate_in_process),
                f"CLI wall - this = {seconds(fast.wall - generate_in_process)}",
            ),
            ("wall, concurrency 1", seconds(slow.wall), f"peak {slow.peak} in flight"),
            (
                "LLM stage, sequential",
                seconds(slow_stage),
                f"ideal {seconds(slow_floor)}, {ratio(slow_stage, slow_floor)}; server span {seconds(slow.span)}",
            ),
            ("speed-up c=4 over c=1", ratio(slow_stage, stage), f"ideal {ratio(slow_floor, floor)}"),
            ("cached regeneration", seconds(cached.seconds), "target < 1 s"),
            ("  LLM calls / arXiv requests", f"{llm_calls} / {arxiv_requests}", "must be 0 / 0"),
        ],
    )
    verdicts = {"stage / ideal": stage / floor <= TARGET_RATIO, "cached < 1 s": cached.seconds < 1}
    print("  " + ", ".join(f"{name}: {'ok' if ok else 'MISSED'}" for name, ok in verdicts.items()))


if __name__ == "__main__":
    main()
