"""The only module that knows the order of the stages:
window -> fetch -> store -> select -> (LLM texts) -> render -> write."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx

from . import render
from .arxiv import ArxivClient, submitted_range_query
from .config import Config
from .models import Post, PostEntry, Texts, Window
from .polite import PoliteHttp, RetryPolicy
from .select import select
from .store import Store
from .window import closed_window, latest_closed_day, window_for

log = logging.getLogger(__name__)

TZ_LABELS = {"Asia/Shanghai": ("CST", "CST，北京时间")}


@dataclass(frozen=True)
class DayOutcome:
    day: date
    fetched: int
    shown: int
    path: Path | None  # None: nothing to write (no papers) or a better post was kept
    note: str = ""


@dataclass(frozen=True)
class RunOutcome:
    days: tuple[DayOutcome, ...]
    requests: int
    seconds: float
    pending: int

    @property
    def fetched(self) -> int:
        return sum(d.fetched for d in self.days)

    @property
    def shown(self) -> int:
        return sum(d.shown for d in self.days)


@dataclass
class Digest:
    """Holds the long-lived pieces of one run: config, store, the polite HTTP session, the clock."""

    config: Config
    now: Callable[[], datetime]
    sleep: Callable[[float], None] = time.sleep
    store: Store = field(init=False)
    _http: PoliteHttp | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.store = Store(self.config.store.path)
        self.env = render.environment(self.config.site.templates_dir)

    def close(self) -> None:
        if self._http is not None:
            self._http.client.close()
        self.store.close()

    @property
    def http(self) -> PoliteHttp:
        """Created on first use, so runs that need no network open no connection."""
        if self._http is None:
            cfg = self.config.arxiv
            client = httpx.Client(
                headers={"User-Agent": cfg.user_agent}, timeout=cfg.timeout, follow_redirects=True
            )
            policy = RetryPolicy(cfg.retries, cfg.backoff, cfg.max_retry_after)
            self._http = PoliteHttp(client, interval=cfg.request_interval, policy=policy, sleep=self.sleep)
        return self._http

    # -- stages ---------------------------------------------------------------------------
    def window(self, day: date) -> Window:
        return window_for(day, self.config.window.timezone, self.config.window.anchor)

    def fetch(self, windows: Sequence[Window]) -> int:
        """One paged query over the span of ``windows``; stores papers and marks the windows fetched."""
        start, end = min(w.start for w in windows), max(w.end for w in windows)
        client = ArxivClient(self.http, self.config.arxiv.api_url, self.config.arxiv.page_size)
        result = client.search(submitted_range_query(self.config.arxiv.categories, start, end))
        in_range = [p for p in result.papers if start <= p.published < end]
        self.store.save_fetch(in_range, windows, start, end, result.requests, self.now())
        log.info("fetched %d papers in %d request(s) for %s .. %s", len(in_range), result.requests, start, end)
        return result.requests

    def post_for(self, window: Window) -> tuple[Post, list[str]]:
        """The post of ``window`` from the store, and the ids it newly shows."""
        papers = self.store.papers_between(window.start, window.end)
        owners = self.store.post_days(p.arxiv_id for p in papers)
        selection = select(
            papers,
            window,
            self.config.arxiv.categories,
            self.config.filter,
            shown_elsewhere=[i for i, d in owners.items() if d != window.day],
            shown_here=[i for i, d in owners.items() if d == window.day],
        )
        tz = self.config.window.timezone
        short, label = TZ_LABELS.get(tz, (window.end.strftime("%Z"), window.end.strftime("%Z")))
        post = Post(
            window=window,
            timezone=tz,
            timezone_label=label,
            timezone_short=short,
            anchor=self.config.window.anchor,
            tags=self.config.arxiv.categories,
            fetched=selection.fetched,
            entries=tuple(PostEntry(paper=p, texts=Texts()) for p in selection.shown),
            left_out_by_cap=selection.left_out_by_cap,
        )
        return post, [p.arxiv_id for p in selection.shown if p.arxiv_id not in owners]

    def write(self, post: Post, new_ids: list[str], force: bool = False) -> DayOutcome:
        """Render in memory, refuse to replace a better post, write atomically, then record."""
        day = post.window.day
        if not post.entries:
            return DayOutcome(day, post.fetched, 0, None, "no papers, no post")
        text = render.render_post(post, self.env)
        path = self.config.site.posts_dir / f"{day.isoformat()}-arxiv.md"
        if path.exists() and not force:
            old = path.read_text(encoding="utf-8")
            if old == text:
                return DayOutcome(day, post.fetched, len(post.entries), path, "unchanged")
            worse = [a < b for a, b in zip(render.post_quality(text), render.post_quality(old), strict=True)]
            if any(worse):
                log.warning("%s: kept the existing post, which has more papers or texts than a rewrite would", path)
                return DayOutcome(day, post.fetched, len(post.entries), None, "kept existing better post")
        render.write_atomic(path, text)
        stamp = self.now()
        with self.store.transaction():
            self.store.assign(day, new_ids, stamp)
            for entry in post.entries:
                self.store.set_pending(entry.paper.arxiv_id, not entry.texts.complete)
            sha = hashlib.sha256(text.encode()).hexdigest()
            self.store.record_post(day, path, post.fetched, len(post.entries), post.left_out_by_cap, sha, stamp)
        return DayOutcome(day, post.fetched, len(post.entries), path)

    # -- commands -------------------------------------------------------------------------
    def generate(self, days: Sequence[date], *, refetch: bool = False, force: bool = False) -> RunOutcome:
        """Posts for ``days``; windows already fetched come from the store without network."""
        started = time.monotonic()
        now = self.now()
        cfg = self.config.window
        windows = [closed_window(day, cfg.timezone, cfg.anchor, now) for day in days]
        missing = [w for w in windows if refetch or self.store.window_fetched_at(w.day) is None]
        requests = self.fetch(missing) if missing else 0
        outcomes = [self.write(*self.post_for(w), force=force) for w in windows]
        return RunOutcome(tuple(outcomes), requests, time.monotonic() - started, self.store.pending_count())

    def run_latest(self) -> RunOutcome:
        """The latest closed window, re-checking the previous ``refresh_days`` windows for late papers."""
        cfg = self.config.window
        latest = latest_closed_day(self.now(), cfg.timezone, cfg.anchor)
        days = [latest - timedelta(days=n) for n in range(cfg.refresh_days, -1, -1)]
        return self.generate(days, refetch=True)
