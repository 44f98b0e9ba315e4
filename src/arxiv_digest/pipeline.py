"""The only module that knows the order of the stages:
window -> fetch -> store -> select -> (LLM texts) -> render -> write."""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from tqdm import tqdm

from . import fulltext, render
from .arxiv import ArxivClient, submitted_range_query
from .config import Config
from .files import remove_stale_temp_files, write_atomic
from .fulltext_extract import trim_for_llm
from .glossary import Glossary, load_glossary, locate
from .llm import ChatClient, LLMError, LLMFatal, LLMTooLong
from .models import LateNote, Paper, PaperPage, Post, PostEntry, Texts, Window
from .polite import PoliteHttp, RetryPolicy
from .select import select
from .store import Store
from .summarize import (
    BudgetExhausted,
    Job,
    Usage,
    check_explainer,
    check_page,
    check_translation,
    explainer_key,
    load_prompt,
    page_from_json,
    page_key,
    page_to_json,
    run_job,
    translation_key,
)
from .verdict import ModelUnfit, Verdict
from .window import closed_window, latest_closed_day, window_for

log = logging.getLogger(__name__)
PROGRESS_LOGGER = "arxiv_digest.progress"
progress = logging.getLogger(PROGRESS_LOGGER)  # one line per step when there is no terminal for a bar

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
    usage: Usage | None = None  # None: the LLM is not configured
    llm_error: str | None = None  # a failure retrying could not fix (bad key, no quota)
    cost: float | None = None  # when prices are configured
    currency: str = ""
    late: int = 0  # papers added to posts published by earlier runs
    verdict: str | None = None  # the model was judged unfit early in the run: why, in one line
    given_up: tuple[tuple[str, date], ...] = ()  # (id, post day) of papers this run stopped retrying

    @property
    def fetched(self) -> int:
        return sum(d.fetched for d in self.days)

    @property
    def shown(self) -> int:
        return sum(d.shown for d in self.days)


@dataclass(frozen=True)
class LLMRun:
    """What the LLM stage of one run did (see ``Digest.fill_texts``)."""

    usage: Usage
    fatal: str | None = None  # a failure retrying could not fix (bad key, no quota)
    verdict: str | None = None  # the model was judged unfit: no more calls this run
    given_up: tuple[str, ...] = ()


@dataclass
class Digest:
    """Holds the long-lived pieces of one run: config, store, HTTP sessions, prompts, the clock."""

    config: Config
    now: Callable[[], datetime]
    sleep: Callable[[float], None] = time.sleep
    store: Store = field(init=False)
    _http: PoliteHttp | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.store = Store(self.config.store.path)
        self.env = render.environment(self.config.site.templates_dir)
        if self.config.site.kramdown_parse_block_html:
            self.env.globals["SUMMARY_OPEN"] = '<summary markdown="span">'
        self.prompts = {
            "translation": load_prompt(self.env, "prompts/translate.j2"),
            "explainer": load_prompt(self.env, "prompts/explain.j2"),
            "page": load_prompt(self.env, "prompts/page.j2"),
        }
        self.glossary = self._glossary()
        self.glossary_prompt = load_prompt(self.env, "prompts/glossary.j2")
        if self.glossary is not None:  # the glossary is part of the texts' cache keys
            salt = self.glossary.digest + self.glossary_prompt.digest
            for kind in ("translation", "explainer"):
                prompt = self.prompts[kind]
                digest = hashlib.sha256((prompt.digest + salt).encode()).hexdigest()[:16]
                self.prompts[kind] = replace(prompt, digest=digest)
        self.models = {
            "translation": self.config.llm.model,
            "explainer": self.config.llm.explainer_model or self.config.llm.model,
            "page": self.config.llm.model,
        }
        self.taxonomy = self.config.pages.taxonomy

    def _glossary(self) -> Glossary | None:
        path = self.config.llm.glossary
        return load_glossary(locate(path, self.config.site.templates_dir)) if path else None

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
                headers={"User-Agent": cfg.user_agent},
                timeout=cfg.timeout,
                follow_redirects=True,
                trust_env=False,
            )
            policy = RetryPolicy(cfg.retries, cfg.backoff, cfg.max_retry_after)
            self._http = PoliteHttp(client, interval=cfg.request_interval, policy=policy, sleep=self.sleep)
        return self._http

    # -- stages ---------------------------------------------------------------------------
    def window(self, day: date) -> Window:
        return window_for(day, self.config.window.timezone, self.config.window.anchor)

    def fetch(self, windows: Sequence[Window]) -> None:
        """One paged query over the span of ``windows``.

        Results come oldest first, so once a page reaches past a window's end that window is
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
        with tqdm(desc="arXiv", unit="page", disable=None, leave=False) as bar:
            for page in client.pages(query):
                bar.total = -(-page.total_results // self.config.arxiv.page_size)
                bar.update()
                for paper in page.papers:
                    if start <= paper.published < end:
                        papers[paper.arxiv_id] = paper
                horizon = max((p.published for p in page.papers), default=end)
                done = [w for w in pending if w.end <= horizon]
                if done:
                    save(done)
                    pending = [w for w in pending if w not in done]
        if pending:
            save(pending)

    def stored_fulltext(self, paper: Paper) -> fulltext.FullText | None:
        if not self.config.fulltext.enabled:
            return fulltext.abstract_only(paper)
        found = self.store.fulltext(paper.versioned_id)
        return fulltext.FullText(*found) if found else None

    def translation_key(self, paper: Paper) -> str:
        return translation_key(paper, self.prompts["translation"], self.models["translation"])

    def explainer_key(self, paper: Paper, source: fulltext.FullText) -> str:
        return explainer_key(paper, source, self.prompts["explainer"], self.models["explainer"])

    def page_key(self, paper: Paper) -> str:
        return page_key(paper, self.prompts["page"], self.models["page"], self.taxonomy)

    def texts(self, paper: Paper) -> Texts:
        """Current texts, else the newest valid ones of an older prompt/model (never worse than none)."""
        source = self.stored_fulltext(paper)
        keys = (
            self.translation_key(paper),
            self.explainer_key(paper, source) if source else None,  # unknown until the full text is
            self.page_key(paper) if self.config.pages.enabled else None,
        )
        found = [
            (self.store.text(key) if key else None) or self.store.latest_text(paper.arxiv_id, kind)
            for key, kind in zip(keys, ("translation", "explainer", "page"), strict=True)
        ]
        page = page_from_json(found[2]) if found[2] and self.config.pages.enabled else None
        unavailable = bool(self.store.given_up([paper.arxiv_id]))
        return Texts(found[0], found[1], page, unavailable=unavailable)

    def complete(self, texts: Texts) -> bool:
        return texts.complete and (texts.page is not None or not self.config.pages.enabled)

    def page_for(self, paper: Paper, texts: Texts) -> PaperPage | None:
        """The paper's own page, once its translation and page info exist."""
        if not self.config.pages.enabled or texts.page is None or texts.translation is None:
            return None
        day = paper.published.astimezone(ZoneInfo(self.config.window.timezone)).date()
        permalink = self.config.pages.permalink.replace("{id}", paper.arxiv_id)
        return PaperPage(paper, day, texts.translation, texts.page, permalink)

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
        zone_name = window.end.astimezone(ZoneInfo(tz)).strftime("%Z")
        short, label = TZ_LABELS.get(tz, (zone_name, zone_name))
        post = Post(
            window=window,
            timezone=tz,
            timezone_label=label,
            timezone_short=short,
            anchor=self.config.window.anchor,
            tags=self.config.arxiv.categories,
            fetched=selection.fetched,
            entries=tuple(self.entry(p) for p in selection.shown),
            left_out_by_cap=selection.left_out_by_cap,
            late=tuple(
                LateNote(day=day, title=paper.title, abs_url=paper.abs_url)
                for day, paper in self.store.late_notes(window.day)
            ),
        )
        return post, [p.arxiv_id for p in selection.shown if p.arxiv_id not in owners]

    def entry(self, paper: Paper) -> PostEntry:
        texts = self.texts(paper)
        page = self.page_for(paper, texts)
        return PostEntry(paper=paper, texts=texts, page_url=page.permalink if page else None)

    def fill_texts(self, papers: Sequence[Paper], retry_pending: bool = False) -> LLMRun:
        """Ask the LLM for every missing translation and explainer, ``llm.concurrency`` at a time.

        Full texts download one at a time in a background thread (arXiv etiquette) while
        translations are already running; each explainer starts as soon as its text is in.
        Results are stored as they arrive (by this thread only), so a killed run keeps them.
        Papers given up by earlier runs are skipped unless ``retry_pending``; a paper whose texts
        fail again counts one more failed run, and is given up after ``llm.pending_max_runs``.
        """
        cfg = self.config.llm
        usage = Usage(max_calls=cfg.max_calls, max_tokens=cfg.max_total_tokens)
        if not retry_pending:
            given_up = self.store.given_up(p.arxiv_id for p in papers)
            papers = [p for p in papers if p.arxiv_id not in given_up]
        jobs: list[Job] = []
        downloads: list[Paper] = []
        for paper in papers:
            key = self.translation_key(paper)
            if not self._cached(key, usage):
                check = partial(check_translation, paper=paper)
                jobs.append(self._job("translation", paper, key, check, "abstract", {"paper": paper}))
            if self.config.pages.enabled and not self._cached(key := self.page_key(paper), usage):
                check = partial(self._check_page, paper=paper)
                jobs.append(
                    self._job("page", paper, key, check, "abstract", {"paper": paper, "taxonomy": self.taxonomy})
                )
            source = self.stored_fulltext(paper)
            if source is None:
                downloads.append(paper)
            elif (job := self._explainer_job(paper, source, usage)) is not None:
                jobs.append(job)
        if not jobs and not downloads:
            return LLMRun(usage)
        api_key = os.environ.get(cfg.api_key_env) or None
        client = httpx.Client(
            timeout=cfg.timeout, trust_env=False, limits=httpx.Limits(max_connections=cfg.concurrency)
        )
        chat = ChatClient(
            client,
            cfg.base_url,
            api_key,
            RetryPolicy(cfg.retries, cfg.backoff, cfg.max_retry_after),
            sleep=self.sleep,
            stream=cfg.stream,
        )
        verdict = Verdict(cfg.verdict_after)
        stop_downloads = threading.Event()  # no explainer will be asked for: the model or the key failed
        failures: dict[str, str] = {}  # paper -> why its texts failed this run
        results: queue.Queue[tuple[str, object, object]] = queue.Queue()
        fatal: str | None = None
        with (
            client,
            ThreadPoolExecutor(cfg.concurrency) as pool,
            tqdm(total=len(jobs) + len(downloads), unit="paper", desc="LLM", disable=None, leave=False) as bar,
        ):

            def submit(job: Job) -> None:
                future = pool.submit(
                    run_job, job, chat, usage, cfg.temperature, cfg.max_tokens, cfg.retries + 1, verdict=verdict
                )
                future.add_done_callback(lambda f, job=job: results.put(("job", job, f)))

            for job in jobs:
                submit(job)
            if downloads:
                args = (downloads, results, stop_downloads)
                threading.Thread(target=self._download_all, args=args, daemon=True).start()
            outstanding = len(jobs) + len(downloads)
            while outstanding:
                kind, subject, payload = results.get()
                outstanding -= 1
                bar.update()
                if kind == "fulltext":
                    paper, source = subject, payload
                    if source is None:  # skipped
                        continue
                    assert isinstance(paper, Paper) and isinstance(source, fulltext.FullText)
                    if source.definite:
                        self.store.save_fulltext(paper.versioned_id, source.source, source.text, self.now())
                    if (job := self._explainer_job(paper, source, usage)) is not None:
                        submit(job)
                        outstanding += 1
                        bar.total += 1
                    continue
                assert isinstance(subject, Job) and isinstance(payload, Future)
                try:
                    fatal = self._collect(subject, payload, usage, failures) or fatal
                    if fatal or verdict.unfit():
                        stop_downloads.set()
                except LLMTooLong:
                    results.put(("fulltext", subject.paper, self._shorter_fulltext(subject.paper)))
                    outstanding += 1
                    bar.total += 1
        complete = [p.arxiv_id for p in papers if self.complete(self.texts(p))]
        self.store.clear_llm_failures(complete)
        failed = {arxiv_id: why for arxiv_id, why in failures.items() if arxiv_id not in complete}
        given_up = self.store.record_llm_failures(failed, cfg.pending_max_runs, self.now())
        unfit = "; ".join(str(judged) for judged in verdict.unfit()) or None
        return LLMRun(usage, fatal, unfit, tuple(given_up))

    def _shorter_fulltext(self, paper: Paper) -> fulltext.FullText:
        """Half the text the model could not take (the abstract in the end); kept for later runs."""
        current = self.stored_fulltext(paper) or fulltext.abstract_only(paper)
        if current.source == "abstract" or len(current.text) < 4000:
            return fulltext.abstract_only(paper)
        shorter = trim_for_llm(current.text, len(current.text) // 2)
        log.info("%s: full text too long for the model; retrying with %d characters", paper.versioned_id, len(shorter))
        return fulltext.FullText(current.source, shorter)

    def _job(
        self, kind: str, paper: Paper, key: str, check: Callable[[str], str], source: str, values: dict[str, object]
    ) -> Job:
        messages = self.prompts[kind].messages(**values)
        terms: tuple = ()
        if self.glossary is not None and kind in ("translation", "explainer"):
            read = (paper.summary,) if kind == "translation" else (paper.title, paper.summary, str(values["fulltext"]))
            terms = self.glossary.occurring(*read)
            if terms:  # only the paper's own terms, to keep prompts small
                messages[-1]["content"] += "\n\n" + self.glossary_prompt.template.render(terms=terms).strip()
        checked = terms if kind == "translation" else ()
        return Job(kind, paper, key, self.models[kind], messages, check, source, checked)

    def _check_page(self, answer: str, paper: Paper) -> str:
        return page_to_json(check_page(answer, paper, self.taxonomy))

    def _cached(self, key: str, usage: Usage) -> bool:
        """Whether the store already holds the text for ``key`` (counted as a cache hit)."""
        if self.store.text(key) is None:
            return False
        usage.cache_hits += 1
        return True

    def _explainer_job(self, paper: Paper, source: fulltext.FullText, usage: Usage) -> Job | None:
        key = self.explainer_key(paper, source)
        if self._cached(key, usage):
            return None
        values = {"paper": paper, "fulltext": source.text, "source_label": source.label}
        return self._job("explainer", paper, key, check_explainer, source.source, values)

    def _download_all(self, papers: Sequence[Paper], results: queue.Queue, stop: threading.Event) -> None:
        cfg = self.config.fulltext
        for paper in papers:
            if stop.is_set():
                results.put(("fulltext", paper, None))
                continue
            try:
                found = fulltext.download(paper, self.http, cfg.html_url, cfg.pdf_url, cfg.max_chars)
            except Exception as exc:  # a download must never sink the run: fall back to the abstract
                log.warning("%s: full text unavailable (%s); using the abstract", paper.versioned_id, exc)
                found = fulltext.abstract_only(paper, definite=False)
            results.put(("fulltext", paper, found))

    def _collect(self, job: Job, future: Future, usage: Usage, failures: dict[str, str]) -> str | None:
        """Store a finished job's text; return the message of a fatal LLM error, if any."""
        try:
            text = future.result()
        except (BudgetExhausted, ModelUnfit):
            return None
        except LLMFatal as exc:
            usage.failed()
            return str(exc)
        except LLMTooLong:
            if job.kind == "explainer" and job.source != "abstract":
                raise
            usage.failed()
            log.warning(
                "%s %s stays pending: the abstract alone is too long for the model", job.paper.versioned_id, job.kind
            )
            return None
        except LLMError as exc:
            usage.failed()
            failures[job.paper.arxiv_id] = f"{job.kind}: {exc}"
            log.warning("%s %s stays pending: %s", job.paper.versioned_id, job.kind, exc)
            return None
        paper = job.paper
        self.store.save_text(job.key, paper.arxiv_id, paper.version, job.kind, text, job.model, job.source, self.now())
        progress.info("LLM: %s %s done", job.paper.versioned_id, job.kind)
        return None

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
                self._record(post, new_ids, path, text)
                self.write_pages(post)
                return DayOutcome(day, post.fetched, len(post.entries), path, "unchanged")
            worse = [a < b for a, b in zip(render.post_quality(text), render.post_quality(old), strict=True)]
            if any(worse):
                log.warning("%s: kept the existing post, which has more papers or texts than a rewrite would", path)
                return DayOutcome(day, post.fetched, len(post.entries), None, "kept existing better post")
        write_atomic(path, text)
        self._record(post, new_ids, path, text)
        self.write_pages(post)
        return DayOutcome(day, post.fetched, len(post.entries), path)

    def write_pages(self, post: Post) -> None:
        """Each paper's own page (when enabled), rewritten only when its text changed."""
        folder = self.config.pages.dir or self.config.site.posts_dir
        for entry in post.entries:
            page = self.page_for(entry.paper, entry.texts)
            if page is None:
                continue
            text = render.render_page(page, self.env)
            path = folder / f"{page.day.isoformat()}-{entry.paper.arxiv_id}.md"
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                write_atomic(path, text)

    def _record(self, post: Post, new_ids: list[str], path: Path, text: str) -> None:
        stamp = self.now()
        with self.store.transaction():
            self.store.assign(post.window.day, new_ids, stamp)
            for entry in post.entries:
                self.store.set_pending(entry.paper.arxiv_id, not self.complete(entry.texts))
            sha = hashlib.sha256(text.encode()).hexdigest()
            self.store.record_post(
                post.window.day, path, post.fetched, len(post.entries), post.left_out_by_cap, sha, stamp
            )

    # -- commands -------------------------------------------------------------------------
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
        at the end of that day's post, which is written last. ``retry_pending`` also retries
        papers that earlier runs gave up on.
        """
        started = time.monotonic()
        now = self.now()
        cfg = self.config.window
        for folder in {self.config.site.posts_dir, self.config.pages.dir or self.config.site.posts_dir}:
            remove_stale_temp_files(folder)
        windows = [closed_window(day, cfg.timezone, cfg.anchor, now) for day in days]
        missing = [w for w in windows if refetch or self.store.window_fetched_at(w.day) is None]
        requests_before = self._http.requests if self._http else 0
        if missing:
            self.fetch(missing)
        windows += [self.window(day) for day in extra_days if day not in days]
        llm_run = None
        if self.config.llm_enabled:
            papers = [entry.paper for w in windows for entry in self.post_for(w)[0].entries]
            llm_run = self.fill_texts(papers, retry_pending)
        usage = llm_run.usage if llm_run else None
        windows.sort(key=lambda w: (w.day == late_into, w.day))
        if late_into:
            with self.store.transaction():
                self.store.adopt_unlisted_late_notes(late_into)
        outcomes, late = [], 0
        for window in windows:
            published_before = self.store.post_sha(window.day) is not None
            post, new_ids = self.post_for(window)
            outcome = self.write(post, new_ids, force=force)
            outcomes.append(outcome)
            if late_into and window.day != late_into and published_before and new_ids and outcome.path:
                with self.store.transaction():
                    self.store.add_late(new_ids, late_into, self.now())
                late += len(new_ids)
        outcomes.sort(key=lambda o: o.day)
        requests = (self._http.requests if self._http else 0) - requests_before
        seconds = time.monotonic() - started
        llm = self.config.llm
        cost = None
        if usage is not None and (llm.price_input or llm.price_output):
            cost = (usage.tokens_in * llm.price_input + usage.tokens_out * llm.price_output) / 1e6
        pending = self.store.pending_count()
        given_up = self.store.post_days(llm_run.given_up) if llm_run else {}
        return RunOutcome(
            tuple(outcomes),
            requests,
            seconds,
            pending,
            usage,
            llm_run.fatal if llm_run else None,
            cost,
            llm.currency,
            late,
            llm_run.verdict if llm_run else None,
            tuple(sorted(given_up.items(), key=lambda item: (item[1], item[0]))),
        )

    def run_latest(self) -> RunOutcome:
        """The latest closed window, re-checking the previous ``refresh_days`` windows for late
        papers, and re-trying every post that still has pending papers."""
        cfg = self.config.window
        latest = latest_closed_day(self.now(), cfg.timezone, cfg.anchor)
        days = [latest - timedelta(days=n) for n in range(cfg.refresh_days, -1, -1)]
        pending = [d for d in self.store.pending_days() if d not in days] if self.config.llm_enabled else []
        return self.generate(days, refetch=True, extra_days=pending, late_into=latest)
