"""The concurrent LLM engine: every missing text of a run's papers, ``llm.concurrency`` calls at a time.

Full texts download one at a time in a background thread (arXiv etiquette) while translations
are already running; each explainer starts as soon as its text is in. Workers and the download
thread only send messages; this module's collecting loop, in the caller's thread, is the only
code that touches the store, so results are stored as they arrive and a killed run keeps them.

The run's ``Verdict`` on each model is consulted before every call: once a model's first answers
have all been rejected, the engine stops (what is valid is kept). A paper whose texts failed counts
one more failed run in the store, and is given up after ``llm.pending_max_runs`` of them.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import httpx

from . import fulltext
from .cache import TextCache
from .config import Config
from .fulltext import FullText, Source
from .fulltext_extract import trim_for_llm
from .llm import ChatClient, LLMError, LLMFatal, LLMTooLong
from .models import Paper, TextKind
from .outcome import PROGRESS_LOGGER
from .polite import PoliteHttp, RetryPolicy, tls_context
from .progress import progress_bar
from .summarize import (
    BudgetExhausted,
    Job,
    Usage,
    check_explainer,
    check_page,
    check_translation,
    page_to_json,
    run_job,
)
from .verdict import ModelUnfit, Verdict

log = logging.getLogger(__name__)
progress = logging.getLogger(PROGRESS_LOGGER)  # one line per step when there is no terminal for a bar


@dataclass(frozen=True)
class JobDone:
    """A worker finished ``job`` (its future holds the text or the error)."""

    job: Job
    future: Future[str]


@dataclass(frozen=True)
class FullTextReady:
    """The download thread (or a too-long prompt) produced the text an explainer reads."""

    paper: Paper
    source: FullText


Message = JobDone | FullTextReady


class TextEngine:
    """One filling of missing texts; make a new engine for each run.

    ``stop()`` ends it early: no new job is submitted and jobs not yet started are cancelled
    (their papers stay pending for the next run); calls in flight finish and are stored.
    """

    def __init__(
        self,
        config: Config,
        cache: TextCache,
        arxiv_http: Callable[[], PoliteHttp],
        now: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.cache = cache
        self.arxiv_http = arxiv_http
        self.now = now
        self.sleep = sleep
        llm = config.llm
        self.usage = Usage(max_calls=llm.max_calls, max_tokens=llm.max_total_tokens)
        self.fatal: str | None = None  # the message of an LLM failure retrying cannot fix
        self.verdict = Verdict(llm.verdict_after)
        self.failures: dict[str, str] = {}  # paper -> why its texts failed in this run
        self.given_up: list[str] = []  # papers this run gave up on (llm.pending_max_runs)
        self.stopped = False
        self._messages: queue.Queue[Message] = queue.Queue()
        self._futures: list[Future[str]] = []

    def fill(self, papers: Sequence[Paper], retry_pending: bool = False) -> tuple[Usage, str | None]:
        """Ask for every missing translation, explainer (and page info); return usage and a fatal error.

        Papers given up by earlier runs are left alone unless ``retry_pending``."""
        if not retry_pending:
            given_up = self.cache.store.given_up(p.arxiv_id for p in papers)
            papers = [p for p in papers if p.arxiv_id not in given_up]
        self._fill(papers)
        complete = [p.arxiv_id for p in papers if self.cache.complete(self.cache.texts(p))]
        self.cache.store.clear_llm_failures(complete)
        failed = {arxiv_id: why for arxiv_id, why in self.failures.items() if arxiv_id not in complete}
        self.given_up = self.cache.store.record_llm_failures(failed, self.config.llm.pending_max_runs, self.now())
        return self.usage, self.fatal

    @property
    def unfit(self) -> str | None:
        """Why the run stopped calling a model (the verdict), in one line; None if it did not."""
        return "; ".join(str(judged) for judged in self.verdict.unfit()) or None

    def _fill(self, papers: Sequence[Paper]) -> None:
        jobs: list[Job] = []
        downloads: list[Paper] = []
        for paper in papers:
            jobs += self._abstract_jobs(paper)
            source = self.cache.fulltext(paper)
            if source is None:
                downloads.append(paper)
            elif (job := self._explainer_job(paper, source)) is not None:
                jobs.append(job)
        if not jobs and not downloads:
            return
        cfg = self.config.llm
        client = httpx.Client(
            timeout=cfg.timeout,
            trust_env=False,
            verify=tls_context(),
            limits=httpx.Limits(max_connections=cfg.concurrency),
        )
        policy = RetryPolicy(cfg.retries, cfg.backoff, cfg.max_retry_after)
        key = os.environ.get(cfg.api_key_env) or None
        chat = ChatClient(client, cfg.base_url, key, policy, sleep=self.sleep, stream=cfg.stream)
        with (
            client,
            ThreadPoolExecutor(cfg.concurrency) as pool,
            progress_bar("LLM", "paper", total=len(jobs) + len(downloads)) as bar,
        ):
            outstanding = len(downloads)  # messages still to come; each submitted job adds one

            def submit(job: Job) -> None:
                nonlocal outstanding
                attempts = cfg.retries + 1
                future = pool.submit(
                    run_job, job, chat, self.usage, cfg.temperature, cfg.max_tokens, attempts, verdict=self.verdict
                )
                self._futures.append(future)
                future.add_done_callback(partial(self._finished, job))
                outstanding += 1

            for job in jobs:
                submit(job)
            if downloads:
                http = self.arxiv_http()
                threading.Thread(target=self._download_all, args=(downloads, http), daemon=True).start()
            while outstanding:
                message = self._messages.get()
                outstanding -= 1
                bar.update()
                follow_up = self._handle(message)
                if (self.fatal or self.verdict.unfit()) and not self.stopped:
                    self.stop()  # the key or the model failed: nothing more will come of new calls
                if follow_up is None or self.stopped:
                    continue
                bar.total = (bar.total or 0) + 1
                if isinstance(follow_up, Job):
                    submit(follow_up)
                else:
                    self._messages.put(follow_up)
                    outstanding += 1

    def stop(self) -> None:
        """Submit no new job and cancel those not started; called from the collecting thread."""
        self.stopped = True
        for future in self._futures:
            future.cancel()

    def _finished(self, job: Job, future: Future[str]) -> None:
        self._messages.put(JobDone(job, future))

    def _handle(self, message: Message) -> Job | FullTextReady | None:
        """Store what ``message`` brings; return the work it leads to (an explainer, a shorter text)."""
        if isinstance(message, FullTextReady):
            if message.source.definite:
                self.cache.save_fulltext(message.paper, message.source, self.now())
            return self._explainer_job(message.paper, message.source)
        try:
            self._collect(message.job, message.future)
        except LLMTooLong:
            return FullTextReady(message.job.paper, self._shorter_fulltext(message.job.paper))
        return None

    def _collect(self, job: Job, future: Future[str]) -> None:
        """Store a finished job's text; a failure leaves the paper pending (a fatal one is remembered)."""
        try:
            text = future.result()
        except (BudgetExhausted, CancelledError, ModelUnfit):
            return
        except LLMFatal as exc:
            self.usage.failed()
            self.fatal = self.fatal or str(exc)
            return
        except LLMTooLong:
            if job.kind == "explainer" and job.source != "abstract":
                raise
            self.usage.failed()
            log.warning(
                "%s %s stays pending: the abstract alone is too long for the model", job.paper.versioned_id, job.kind
            )
            return
        except LLMError as exc:
            self.usage.failed()
            self.failures[job.paper.arxiv_id] = f"{job.kind}: {exc}"
            log.warning("%s %s stays pending: %s", job.paper.versioned_id, job.kind, exc)
            return
        self.cache.save(job.key, job.kind, job.paper, text, job.model, job.source, self.now())
        progress.info("LLM: %s %s done", job.paper.versioned_id, job.kind)

    def _shorter_fulltext(self, paper: Paper) -> FullText:
        """Half the text the model could not take (the abstract in the end); kept for later runs."""
        current = self.cache.fulltext(paper) or fulltext.abstract_only(paper)
        if current.source == "abstract" or len(current.text) < 4000:
            return fulltext.abstract_only(paper)
        shorter = trim_for_llm(current.text, len(current.text) // 2)
        log.info("%s: full text too long for the model; retrying with %d characters", paper.versioned_id, len(shorter))
        return FullText(current.source, shorter)

    def _cached(self, key: str) -> bool:
        """Whether the store already holds the text for ``key`` (counted as a cache hit)."""
        if not self.cache.has(key):
            return False
        self.usage.cache_hits += 1
        return True

    def _abstract_jobs(self, paper: Paper) -> list[Job]:
        """The jobs that read only the abstract: the translation, and the page info when pages are on."""
        jobs = []
        if not self._cached(key := self.cache.translation_key(paper)):
            check = partial(check_translation, paper=paper)
            jobs.append(self._job("translation", paper, key, check, "abstract", {"paper": paper}))
        if self.config.pages.enabled and not self._cached(key := self.cache.page_key(paper)):
            check = partial(self._check_page, paper=paper)
            values = {"paper": paper, "taxonomy": self.cache.taxonomy}
            jobs.append(self._job("page", paper, key, check, "abstract", values))
        return jobs

    def _explainer_job(self, paper: Paper, source: FullText) -> Job | None:
        key = self.cache.explainer_key(paper, source)
        if self._cached(key):
            return None
        values = {"paper": paper, "fulltext": source.text, "source_label": source.label}
        return self._job("explainer", paper, key, check_explainer, source.source, values)

    def _job(
        self,
        kind: TextKind,
        paper: Paper,
        key: str,
        check: Callable[[str], str],
        source: Source,
        values: dict[str, object],
    ) -> Job:
        messages = self.cache.prompts[kind].messages(**values)
        terms = self.cache.glossary_terms(kind, paper, str(values.get("fulltext") or ""))
        if terms:  # only the paper's own terms, to keep prompts small
            messages[-1]["content"] += "\n\n" + self.cache.glossary_block(terms)
        checked = terms if kind == "translation" else ()  # a translation must use them
        return Job(kind, paper, key, self.cache.models[kind], messages, check, source, checked)

    def _check_page(self, answer: str, paper: Paper) -> str:
        return page_to_json(check_page(answer, paper, self.cache.taxonomy))

    def _download_all(self, papers: Sequence[Paper], http: PoliteHttp) -> None:
        cfg = self.config.fulltext
        for paper in papers:
            if self.stopped:  # no explainer will be asked for: skip the download
                self._messages.put(FullTextReady(paper, fulltext.abstract_only(paper, definite=False)))
                continue
            try:
                found = fulltext.download(paper, http, cfg.html_url, cfg.pdf_url, cfg.max_chars)
            except Exception as exc:  # a download must never sink the run: fall back to the abstract
                log.warning("%s: full text unavailable (%s); using the abstract", paper.versioned_id, exc)
                found = fulltext.abstract_only(paper, definite=False)
            self._messages.put(FullTextReady(paper, found))
