"""The build's heavy part, in worker processes on big builds: reading new and changed sources,
converting them, writing their HTML, and the search documents of their papers."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from ..files import SwapWriter
from ..search_docs import SearchDoc
from .convert import pack_body, pack_parts, page_parts, paper_links, unpack_body, unpack_parts
from .manifest import BODY, SourceInfo, kept_bodies
from .markdown import convert, relative_links
from .search import KeptIndex, WorkerIndexing, post_docs
from .sources import load_page, load_post
from .templates import environment, render, render_around

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from ..search_index import IndexedDays

PARALLEL_MIN_SOURCES = 48  # below this, starting worker processes costs more than it saves
SOURCES_PER_TASK = 25
FORKED_MIN_TASKS, FORKED_TASKS_PER_SLICE = 64, 16


@dataclass(frozen=True)
class Worker:
    """What every job needs besides itself: where to write and how to render."""

    site_dir: Path
    dirs: tuple[Path, ...]
    site_globals: dict[str, Any]
    compiled: Path  # compiled templates, in the build state
    state: Path  # the build state's folder, whose kept conversions a batch reads
    renderer: str
    files: SwapWriter  # how HTML is written, with a spare file of each process
    verbatim: bool  # post.html prints ``content`` as it is: a post's page is rendered around its body
    search: bool  # converted posts give their papers' search documents
    indexing: WorkerIndexing | None = None  # set when the workers index the papers themselves
    kept_index: KeptIndex | None = None  # set when every post is converted but the index is kept


@dataclass(frozen=True)
class Job:
    """A source to read (``convert``: it is new or changed) and/or whose HTML to write (``html_key``)."""

    info: SourceInfo
    path: Path
    convert: bool
    html_key: str | None
    newer: SourceInfo | None  # a daily post's neighbours, for its links to them
    older: SourceInfo | None
    kept: bool = False  # an earlier build kept its conversion


Stored = list[tuple[str, int, bytes]]  # conversions to keep: source digest, part, packed


@dataclass(frozen=True)
class BatchResult:
    infos: list[SourceInfo]
    docs: dict[str, list[SearchDoc]]  # source -> its papers for search, for each converted daily post
    conversions: Stored
    converted: int  # sources whose Markdown was converted (not found in the cache)
    indexed: IndexedDays | None = None  # the papers indexed here instead (``Worker.indexing``)


_worker_state: tuple[Worker, jinja2.Environment] | None = None


def _worker_init(worker: Worker) -> None:
    global _worker_state
    _worker_state = (worker, environment(worker.dirs, worker.site_globals, worker.compiled))


def _batch_in_worker(jobs: list[Job]) -> BatchResult:
    if _worker_state is None:
        raise RuntimeError("worker process was not initialised")
    return process_batch(jobs, *_worker_state)


def _post(
    job: Job, kept: bytes | None, worker: Worker, env: jinja2.Environment
) -> tuple[SourceInfo, list[SearchDoc] | None, Stored]:
    """A daily post's HTML, from its ``kept`` conversion or converted now; a new or changed post also
    gets its papers, from its record, and their search documents."""
    info, docs, stored = job.info, None, []
    body, record = load_post(job.path) if job.convert or kept is None else ("", None)
    if kept is None:
        converted = convert(body)
        html, headings = converted.html.encode(), converted.headings
        stored = [(info.digest, BODY, pack_body(html, headings))]
    else:
        html, headings = unpack_body(kept)
    if record is not None and job.convert:
        links = paper_links(record.papers, headings)
        info = replace(info, papers=links)
        docs = post_docs(info, record, body) if worker.search else None
        if docs and worker.kept_index and worker.kept_index.holds(docs):
            docs = None
    if job.html_key:
        context = {"post": info, "newer": job.newer, "older": job.older, "head_title": info.title}
        page = render_around(env, "post.html", info.url, relative_links(html, info.url), worker.verbatim, **context)
        worker.files.write(worker.site_dir / info.url, page)
    return info.packed(), docs, stored


def _page(job: Job, kept: bytes | None, worker: Worker, env: jinja2.Environment) -> tuple[SourceInfo, None, Stored]:
    """A per-paper page: its parts from its record (or ``kept``), written with ``paper.html`` (search
    finds it through its daily post's paper)."""
    info, stored = job.info, []
    record = load_page(job.path) if job.convert or kept is None else None
    if kept is None:
        parts = page_parts(record)  # type: ignore[arg-type]  # read just above
        stored = [(info.digest, BODY, pack_parts(parts))]
    else:
        parts = unpack_parts(kept)
    if record is not None and job.convert:
        info = replace(info, en_title=str(parts.title))
    if job.html_key:
        context = {"page": info, "parts": parts, "head_title": info.title}
        worker.files.write(worker.site_dir / info.url, render(env, "paper.html", info.url, **context))
    return info, None, stored


def process_batch(jobs: list[Job], worker: Worker, env: jinja2.Environment) -> BatchResult:
    with kept_bodies(worker.state, worker.renderer) as body_of:
        done = [
            (_page if job.info.is_page else _post)(job, body_of(job.info.digest) if job.kept else None, worker, env)
            for job in jobs
        ]
    docs = {info.source: found for info, found, _ in done if found is not None}
    stored = [row for _, _, rows in done for row in rows]
    infos = [info for info, _, _ in done]
    if worker.indexing:
        return BatchResult(infos, {}, stored, len(stored), worker.indexing.index(list(docs.values())))
    return BatchResult(infos, docs, stored, len(stored))


def run_batches(batches: list[list[Job]], worker: Worker, env: jinja2.Environment) -> Iterator[BatchResult]:
    """Batches in order: in worker processes when there are enough sources to pay for starting
    them, with a few batches in flight per worker, so their results are never all in memory at once."""
    cpus = os.cpu_count() or 1
    if sum(map(len, batches)) < PARALLEL_MIN_SOURCES or cpus < 2:
        for jobs in batches:
            yield process_batch(jobs, worker, env)
        return
    # fork is cheapest but unsafe once other threads run (serve() builds beside its server threads)
    start = "fork" if threading.active_count() == 1 else "forkserver"
    processes = min(cpus, 8)
    with _process_pool(processes, start, initializer=_worker_init, initargs=(worker,)) as pool:
        waiting: deque[Future[BatchResult]] = deque()
        for jobs in batches:
            waiting.append(pool.submit(_batch_in_worker, jobs))
            if len(waiting) > 2 * processes:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()


def _process_pool(processes: int, start: str, **options: Any) -> ProcessPoolExecutor:
    """Worker processes started by ``start`` (fork, forkserver). The machinery is imported only
    here: a small build, such as adding a post, starts none, and importing it cost 5 ms."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(processes, mp_context=get_context(start), **options)


_forked: list[Callable[[], Any]] = []  # what forked processes run, inherited from their parent


def _run_slice(start: int, stop: int) -> list[Any]:
    return [task() for task in _forked[start:stop]]


def run_here_or_forked(tasks: list[Callable[[], Any]], busy: int = 0) -> list[Any]:
    """Run ``tasks`` (closures over this process's data; they return what pickles cheaply) in
    processes forked now, when there are enough of them, two cores to spare besides the ``busy``
    ones (those a process beside this one keeps busy: forked processes would only add to the
    build's memory) and forking is safe (no other thread), else here; their results in order."""
    global _forked
    processes = min((os.cpu_count() or 1) - busy, 8)
    if len(tasks) < FORKED_MIN_TASKS or processes < 2 or threading.active_count() > 1:
        return [task() for task in tasks]
    _forked = tasks
    # a forked process's garbage collector would otherwise visit, and so copy, every object it
    # inherits (``build_site`` puts them back within its reach when the build ends)
    gc.freeze()
    try:
        with _process_pool(processes, "fork") as pool:
            slices = range(0, len(tasks), FORKED_TASKS_PER_SLICE)
            done = [pool.submit(_run_slice, i, i + FORKED_TASKS_PER_SLICE) for i in slices]
            return [result for slice_done in done for result in slice_done.result()]
    finally:
        _forked = []


_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def release_freed_memory() -> None:
    """Hand the memory this process has freed back to the system, where the C library can (glibc
    keeps it for reuse): after a full build's search index, ~90 MB at 3,000 posts, which the
    processes forked next would otherwise inherit and write to as they allocate."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
