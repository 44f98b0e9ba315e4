"""The build's heavy part, in worker processes on big builds: reading new and changed sources,
converting them, writing their HTML, and the search documents of their papers."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ..search_index import SearchDoc
from .convert import CONTENT_END, CONTENT_START, built_content, page_parts, paper_links
from .manifest import SourceInfo
from .markdown import convert, relative_links
from .search import post_docs
from .sources import load_page, load_post
from .templates import environment, render
from .writer import write_file

PARALLEL_MIN_SOURCES = 48  # below this, starting worker processes costs more than it saves
SOURCES_PER_TASK = 25


@dataclass(frozen=True)
class Worker:
    """What every job needs besides itself: where to write and how to render."""

    site_dir: Path
    dirs: tuple[Path, ...]
    site_globals: dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A source to read (``convert``: it is new or changed) and/or whose HTML to write (``html_key``)."""

    info: SourceInfo
    path: Path
    convert: bool
    html_key: str | None
    newer: SourceInfo | None  # a daily post's neighbours, for its links to them
    older: SourceInfo | None


@dataclass(frozen=True)
class BatchResult:
    infos: list[SourceInfo]
    docs: dict[str, list[SearchDoc]]  # source -> its papers for search, for each converted daily post


_worker_state: tuple[Worker, jinja2.Environment] | None = None


def _worker_init(worker: Worker) -> None:
    global _worker_state
    _worker_state = (worker, environment(worker.dirs, worker.site_globals))


def _batch_in_worker(jobs: list[Job]) -> BatchResult:
    if _worker_state is None:
        raise RuntimeError("worker process was not initialised")
    return process_batch(jobs, *_worker_state)


def _post(job: Job, worker: Worker, env: jinja2.Environment) -> tuple[SourceInfo, list[SearchDoc] | None]:
    """Convert a daily post (unless its HTML already holds the conversion) and write its HTML; a new
    or changed post also gets its papers, from its record, and their search documents."""
    info, docs = job.info, None
    content = None if job.convert else built_content(worker.site_dir / info.url)
    if content is None:
        body, record = load_post(job.path)
        converted = convert(body)
        content = converted.html
        if job.convert:
            links = paper_links(record.papers, converted.headings)
            info = replace(info, papers=links)
            docs = post_docs(info, record, body)
    if job.html_key:
        body_html = Markup(CONTENT_START + relative_links(content, info.url) + CONTENT_END)
        context = {"post": info, "content": body_html, "newer": job.newer, "older": job.older}
        write_file(worker.site_dir, info.url, render(env, "post.html", info.url, head_title=info.title, **context))
    return info, docs


def _page(job: Job, worker: Worker, env: jinja2.Environment) -> tuple[SourceInfo, list[SearchDoc] | None]:
    """A per-paper page: its parts from its record, written with ``paper.html`` (search finds it
    through its daily post's paper)."""
    info = job.info
    record = load_page(job.path)
    parts = page_parts(record)
    if job.convert:
        info = replace(info, en_title=str(parts.title))
    if job.html_key:
        context = {"page": info, "parts": parts, "head_title": info.title}
        write_file(worker.site_dir, info.url, render(env, "paper.html", info.url, **context))
    return info, None


def process_batch(jobs: list[Job], worker: Worker, env: jinja2.Environment) -> BatchResult:
    done = [(_page if job.info.is_page else _post)(job, worker, env) for job in jobs]
    return BatchResult([info for info, _ in done], {info.source: docs for info, docs in done if docs is not None})


def run_batches(batches: list[list[Job]], worker: Worker, env: jinja2.Environment) -> Iterator[BatchResult]:
    """Batches in order: in worker processes when there are enough sources to pay for starting them."""
    cpus = os.cpu_count() or 1
    if sum(map(len, batches)) < PARALLEL_MIN_SOURCES or cpus < 2:
        for jobs in batches:
            yield process_batch(jobs, worker, env)
        return
    # fork is cheapest but unsafe once other threads run (serve() builds beside its server threads)
    context = get_context("fork" if threading.active_count() == 1 else "forkserver")
    with ProcessPoolExecutor(min(cpus, 8), mp_context=context, initializer=_worker_init, initargs=(worker,)) as pool:
        yield from pool.map(_batch_in_worker, batches)
