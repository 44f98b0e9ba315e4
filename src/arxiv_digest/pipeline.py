"""The only module that knows the order of the stages:
window -> fetch -> store -> select -> (LLM texts) -> render -> write."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from types import TracebackType

from .arxiv import ArxivClient, submitted_range_query
from .cache import TextCache
from .config import Config
from .engine import TextEngine
from .glossary import Glossary, load_glossary, locate
from .models import Paper, TextKind, Window
from .outcome import PROGRESS_LOGGER, RunOutcome, llm_cost
from .polite import PoliteHttp, arxiv_http
from .posts import Posts, RunFiles, environment
from .progress import progress_bar
from .store import Store
from .summarize import Prompt, Usage, load_prompt
from .window import closed_window, latest_closed_day, window_for

progress = logging.getLogger(PROGRESS_LOGGER)

PROMPTS: dict[TextKind, str] = {
    "translation": "prompts/translate.j2",
    "explainer": "prompts/explain.j2",
    "page": "prompts/page.j2",
}


class Digest:
    """One run's long-lived pieces (config, store, arXiv session, templates, the clock) and the
    order in which the stages use them."""

    def __init__(
        self, config: Config, now: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.config = config
        self.now = now
        self.sleep = sleep
        self.store = Store(config.store.path, config.store.lock_wait)
        self._http: PoliteHttp | None = None
        env = environment(config)
        llm = config.llm
        glossary = load_glossary(locate(llm.glossary, config.site.templates_dir)) if llm.glossary else None
        glossary_prompt = load_prompt(env, "prompts/glossary.j2")
        prompts = {kind: load_prompt(env, name) for kind, name in PROMPTS.items()}
        self.cache = TextCache(
            self.store,
            prompts=with_glossary(prompts, glossary, glossary_prompt),
            models={"translation": llm.model, "explainer": llm.explainer_model or llm.model, "page": llm.model},
            taxonomy=config.pages.taxonomy,
            fulltext_enabled=config.fulltext.enabled,
            pages_enabled=config.pages.enabled,
            glossary=glossary,
            glossary_prompt=glossary_prompt,
        )
        self.posts = Posts(config, self.store, self.cache, env, now)

    def __enter__(self) -> Digest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.client.close()
        self.store.close()

    @property
    def http(self) -> PoliteHttp:
        """Created on first use, so runs that need no network open no connection."""
        if self._http is None:
            self._http = arxiv_http(self.config.arxiv, self.sleep)
        return self._http

    def _requests(self) -> int:
        return self._http.requests if self._http else 0

    # -- stages ---------------------------------------------------------------------------------
    def window(self, day: date) -> Window:
        return window_for(day, self.config.window.timezone, self.config.window.anchor)

    def fetch(self, windows: Sequence[Window]) -> None:
        """One paged query over the span of ``windows``.

        Results come oldest first, so once a batch reaches past a window's end that window is
        complete: it is stored with its papers right away. An interrupted backfill therefore
        resumes where it stopped, and a failed one leaves incomplete windows untouched.
        """
        pending = sorted(windows, key=lambda w: w.start)
        start, end = pending[0].start, pending[-1].end
        client = ArxivClient(self.http, self.config.arxiv.api_url, self.config.arxiv.page_size)
        papers: dict[str, Paper] = {}
        recorded = self.http.requests  # requests already stored with an earlier batch of windows

        def save(complete: list[Window]) -> None:
            nonlocal recorded
            low, high = complete[0].start, complete[-1].end
            chosen = [p for p in papers.values() if low <= p.published < high]
            self.store.save_fetch(chosen, complete, self.http.requests - recorded, self.now())
            recorded = self.http.requests
            progress.info("arXiv: stored %d papers for %s .. %s", len(chosen), complete[0].day, complete[-1].day)

        query = submitted_range_query(self.config.arxiv.categories, start, end)
        with progress_bar("arXiv", "batch") as bar:
            for batch in client.batches(query):
                bar.total = -(-batch.total_results // self.config.arxiv.page_size)
                bar.update()
                for paper in batch.papers:
                    if start <= paper.published < end:
                        papers[paper.arxiv_id] = paper
                horizon = max((p.published for p in batch.papers), default=end)
                done = [w for w in pending if w.end <= horizon]
                if done:
                    save(done)
                    pending = [w for w in pending if w not in done]
        if pending:
            save(pending)

    def text_engine(self) -> TextEngine:
        return TextEngine(self.config, self.cache, lambda: self.http, self.now, self.sleep)

    def fill_texts(self, papers: Sequence[Paper]) -> tuple[Usage, str | None]:
        """Every missing LLM text of ``papers`` (see ``engine``); returns usage and a fatal error."""
        return self.text_engine().fill(papers)

    # -- commands -------------------------------------------------------------------------------
    def generate(
        self,
        days: Sequence[date],
        *,
        refetch: bool = False,
        force: bool = False,
        extra_days: Sequence[date] = (),
        late_into: date | None = None,
        retry_pending: bool = False,
    ) -> RunOutcome:
        """Posts for ``days`` (and ``extra_days``, already-fetched days with pending papers).

        Windows already in the store are rendered without network; missing ones are fetched
        in one paged query; then the LLM fills what is missing, and every post is written.
        With ``late_into``, papers added to posts that were already published are also listed
        at the end of that day's post, which is written last. ``retry_pending`` also retries papers
        that earlier runs gave up on.
        """
        started = time.monotonic()
        now = self.now()
        cfg = self.config.window
        self.posts.remove_stale_temp_files()
        windows = [closed_window(day, cfg.timezone, cfg.anchor, now) for day in days]
        missing = [w for w in windows if refetch or self.store.window_fetched_at(w.day) is None]
        requests_before = self._requests()
        if missing:
            self.fetch(missing)
        windows += [self.window(day) for day in extra_days if day not in days]
        engine = None
        if self.config.llm_enabled:
            engine = self.text_engine()
            engine.fill([entry.paper for w in windows for entry in self.posts.post_for(w)[0].entries], retry_pending)
        usage = engine.usage if engine else None
        windows.sort(key=lambda w: (w.day == late_into, w.day))
        if late_into:
            with self.store.transaction():
                self.store.adopt_unlisted_late_notes(late_into)
        files = RunFiles()
        outcomes, late = [], 0
        for window in windows:
            published_before = self.store.post_sha(window.day) is not None
            post, new_ids = self.posts.post_for(window)
            outcome = self.posts.write(post, new_ids, files, force=force)
            outcomes.append(outcome)
            if late_into and window.day != late_into and published_before and new_ids and outcome.path:
                with self.store.transaction():
                    self.store.add_late(new_ids, late_into, self.now())
                late += len(new_ids)
        outcomes.sort(key=lambda o: o.day)
        given_up = self.store.post_days(engine.given_up) if engine else {}
        return RunOutcome(
            days=tuple(outcomes),
            requests=self._requests() - requests_before,
            seconds=time.monotonic() - started,
            pending=self.store.pending_count(),
            usage=usage,
            llm_error=engine.fatal if engine else None,
            cost=llm_cost(usage, self.config.llm),
            currency=self.config.llm.currency,
            late=late,
            written=tuple(files.paths),
            verdict=engine.unfit if engine else None,
            given_up=tuple(sorted(given_up.items(), key=lambda item: (item[1], item[0]))),
        )

    def run_latest(self) -> RunOutcome:
        """The latest closed window, re-checking the previous ``refresh_days`` windows for late
        papers, and re-trying every post that still has pending papers."""
        cfg = self.config.window
        latest = latest_closed_day(self.now(), cfg.timezone, cfg.anchor)
        days = [latest - timedelta(days=n) for n in range(cfg.refresh_days, -1, -1)]
        pending = [d for d in self.store.pending_days() if d not in days] if self.config.llm_enabled else []
        return self.generate(days, refetch=True, extra_days=pending, late_into=latest)


def with_glossary(
    prompts: Mapping[TextKind, Prompt], glossary: Glossary | None, block: Prompt
) -> dict[TextKind, Prompt]:
    """The prompts whose texts depend on the glossary carry its hash (and its block's) in their digest,
    so a new or changed glossary regenerates them; without one, digests (and cached texts) stay."""
    if glossary is None:
        return dict(prompts)
    salt = glossary.digest + block.digest
    return {
        kind: replace(prompt, digest=hashlib.sha256((prompt.digest + salt).encode()).hexdigest()[:16])
        if kind in ("translation", "explainer")
        else prompt
        for kind, prompt in prompts.items()
    }
