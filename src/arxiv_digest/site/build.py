"""One build: what is stale according to the build state, in which order it is written, and what
the build did."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from functools import partial
from pathlib import Path

from ..files import SwapWriter
from ..search_docs import SearchDoc
from . import search
from .beside import Beside
from .convert import Library
from .feeds import Feeds
from .listings import ref, write_post_listings, write_topic_listings
from .manifest import BuildState, Order, SourceInfo, digest, documents_version, file_digest, order, renderer_version
from .options import BuildReport, SiteError, SiteOptions, state_folder
from .sources import scan
from .templates import TEMPLATES, compile_template, environment, template_dirs, template_facts, tree
from .work import SOURCES_PER_TASK, Job, Worker, release_freed_memory, run_batches, run_here_or_forked
from .writer import Writer

log = logging.getLogger(__name__)


class _Builder:
    """Decides what is stale from the build state and writes it, sources first, then what lists them."""

    def __init__(self, options: SiteOptions) -> None:
        self.options = options
        self.site_dir = options.site_dir
        self.dirs = template_dirs(options.templates_dirs)
        self.static = {
            rel: (file_digest(path.read_bytes()), path)
            for path, rel in tree(reversed(self.dirs))
            if rel.startswith("static/") and (options.search or rel != search.SCRIPT)
        }
        self.renderer = renderer_version()
        asset_version = digest(sorted((r, d) for r, (d, _) in self.static.items()))[:10]
        # what every file depends on; each template's own digest is added to the keys of what it renders
        config = digest(
            self.renderer,
            options.title,
            options.base_url,
            options.posts_per_listing,
            options.papers_per_listing,
            asset_version,
            options.search,
        )
        site = {"title": options.title, "base_url": options.base_url, "search": options.search}
        state = state_folder(options)
        compiled = state / "templates"
        site_globals = {"site": site, "asset_version": asset_version}
        env = environment(self.dirs, site_globals, compiled)
        for name in TEMPLATES:  # a syntax error stops the build before it has touched anything
            compile_template(env, name)
        facts = template_facts(env, TEMPLATES, compiled / "references.json")
        templates = facts.digests
        self.files = SwapWriter(state / "spares")
        self.files.sweep()  # a killed build's
        verbatim = "post.html" in facts.verbatim
        self.worker = Worker(
            self.site_dir,
            tuple(self.dirs),
            site_globals,
            compiled,
            state,
            self.renderer,
            self.files,
            verbatim,
            options.search,
        )
        self.state = BuildState(state)
        self.documents = documents_version()
        trusted = options.incremental and self.state.complete
        full = not (trusted and self.state.renderer == self.renderer)
        # -- search: an index that starts empty needs every source converted; one kept through a
        # change of the renderer gets the documents that differ (see ``_sources``)
        rebuild = not (trusted and self.state.documents == self.documents)
        self.search = search.SiteSearch(
            self.site_dir, state, options.posts_dir, rebuild=rebuild, enabled=options.search
        )
        full = full or self.search.fresh
        old = self.state.outputs
        self.writer = Writer(self.site_dir, env, config, templates, old, full, options.base_url, self.files)
        self.conversions = 0  # Markdown conversions run (the others came from the state's cache)

    def run(self) -> BuildReport:
        started = time.perf_counter()
        # an incremental build's search update (also that of a build converting every post because
        # the renderer changed, see ``_sources``) runs beside it, in a process forked now that loads
        # the index's code (a third of the imports) while this one reads the sources, and then
        # rewrites the index's newest segment while this one renders the listings; a full build
        # plans the index here (its documents, every paper's texts, are freed before the listings
        # render), and its segments are written by a process forked then, beside the listings
        fresh = self.search.fresh
        with Beside("the search index", self.search.opened, fork=self.search.kept) as index:
            # (the search plan needs the sources as they were whenever the index is kept)
            previous = self.state.sources() if not self.writer.full or self.search.kept else {}
            before = {} if self.writer.full else previous
            gc.freeze()  # (see _held_out_of_collection)
            scanned = scan(self.options, before)
            scanned.sort(key=lambda item: (item[0].date, item[0].source), reverse=True)
            gc.freeze()
            self._paper_pages(any(info.is_page for info, _, _ in scanned))
            settled = self._settled(before, scanned)
            self._mark_incomplete()
            docs: dict[str, list[SearchDoc]] = {}
            infos = self._sources(scanned, docs, settled)
            gc.freeze()
            plan = self.search.plan(previous, infos, docs)
            if fresh:  # (the listings then take one core, the segments the other)
                finish_index = self.search.start(plan)
            else:
                index.send(plan)
                finish_index = index.result
            del plan
            run = partial(run_here_or_forked, busy=int(fresh))
            docs.clear()
            release_freed_memory()
            gc.freeze()
            ordered = [infos[info.source] for info, _, _ in scanned]
            daily = [i for i in ordered if not i.is_page]
            pages = [i for i in ordered if i.is_page]
            categories = write_post_listings(
                self.writer, daily, self.options.posts_per_listing, settled, self.state, infos
            )
            topics = write_topic_listings(self.writer, pages, self.options.papers_per_listing, settled)
            if self.search.enabled:
                self.writer.render("search.html", [], "search.html", head_title="搜索")
            gc.freeze()
            library = Library(self.options.posts_dir, self.state, self.renderer, run)
            feeds = Feeds(self.writer, library, self.options.title)
            feeds.site(daily)
            feeds.categories(categories)
            feeds.topics(topics)
            library.keep()
            run(self.writer.take_queued())
            self._static()
            update = finish_index()
        # the index decides itself what it rewrites: its files are not the writer's outputs
        self.writer.written += [f"{search.FOLDER}/{rel}" for rel in update.written]
        removed = self.writer.clean() + tuple(f"{search.FOLDER}/{rel}" for rel in update.removed)
        self.state.save(self.renderer, self.documents, self.writer.basis(), infos, self.writer.outputs)
        written = tuple(self.writer.written)
        seconds = time.perf_counter() - started
        converted = self.conversions + library.conversions
        full = self.writer.full
        return BuildReport(len(daily), written, self.writer.skipped, removed, seconds, full, len(pages), converted)

    def _paper_pages(self, present: bool) -> None:
        """Whether the site has paper pages: the navigation links their overview only then, so every
        HTML file depends on it."""
        self.writer.config = digest(self.writer.config, present)
        self.writer.env.globals["paper_pages"] = present
        self.worker.site_globals["paper_pages"] = present

    def _settled(self, before: dict[str, SourceInfo], scanned: list[tuple[SourceInfo, str, bool]]) -> Order | None:
        """The oldest place (date, then name) where a source was added, changed or removed: the
        sources before it are as the last build left them, and so are the listings' chunks of them
        while what every key starts from is unchanged. None when that changed (or on a full build)."""
        if self.writer.full or self.writer.basis() != self.state.basis:
            return None
        changed = [order(before[info.source]) for info, _, convert in scanned if convert and info.source in before]
        changed += [order(info) for info, _, convert in scanned if convert]
        current = {info.source for info, _, _ in scanned}
        changed += [order(info) for source, info in before.items() if source not in current]
        return min(changed, default=(date.max, ""))

    def _mark_incomplete(self) -> None:
        """From here on files change: a crash must not leave a state that vouches for them."""
        self.site_dir.mkdir(parents=True, exist_ok=True)
        self.state.mark_incomplete()

    def _sources(
        self, scanned: list[tuple[SourceInfo, str, bool]], docs: dict[str, list[SearchDoc]], settled: Order | None
    ) -> dict[str, SourceInfo]:
        """Each source's HTML, written when stale, and the search documents of the converted daily
        posts (into ``docs``, unless the workers index them, or the kept index holds them already: a
        change of the renderer converts every post, and most give the documents they gave before);
        returns every source as it is now (new and changed ones with their papers). A page before
        ``settled``, and a post whose newer neighbour is before it, keep their HTML without being keyed
        (see ``listings.paginate``)."""
        daily = [info for info, _, _ in scanned if not info.is_page]
        neighbours = {
            info.source: (daily[i - 1] if i else None, daily[i + 1] if i + 1 < len(daily) else None)
            for i, info in enumerate(daily)
        }
        kept = self.state.cached(self.renderer)
        jobs: list[Job] = []
        infos: dict[str, SourceInfo] = {}
        urls: dict[str, str] = {}
        for info, path, convert in scanned:
            newer, older = neighbours.get(info.source, (None, None))
            infos[info.source] = info
            if info.url in urls:
                raise SiteError(f"{info.source} and {urls[info.url]} would both be written to {info.url}")
            urls[info.url] = info.source
            # a page stands alone; a post's links change with its newer neighbour (the newest has none
            # to vouch for it: the one it had may be gone)
            bound = info if info.is_page else newer
            if settled and bound and order(bound) < settled and self.writer.unchanged(info.url):
                continue  # it and its neighbours are as the last build left them (so none was converted)
            if info.is_page:
                html_key = self.writer.key("paper.html", info.url, info.digest)
            else:
                html_key = self.writer.key("post.html", info.url, info.digest, ref(newer), ref(older))
            html_stale = self.writer.stale(info.url, html_key)
            if html_stale or convert:
                jobs.append(
                    Job(
                        info,
                        Path(path),
                        convert,
                        html_key if html_stale else None,
                        _bare(newer),
                        _bare(older),
                        kept=info.digest in kept,
                    )
                )
        worker = replace(
            self.worker,
            indexing=self.search.worker_indexing(daily, len(daily) < len(scanned)),
            kept_index=self.search.kept_index([i for i, _, _ in scanned if i.is_page]) if self.writer.full else None,
        )
        if worker.indexing:  # the index takes whole days, oldest first
            jobs.reverse()
            batches = _whole_days(jobs)
        else:
            batches = [jobs[i : i + SOURCES_PER_TASK] for i in range(0, len(jobs), SOURCES_PER_TASK)]
        for result in run_batches(batches, worker, self.writer.env):
            infos.update((info.source, info) for info in result.infos)
            docs.update(result.docs)
            if result.indexed:
                self.search.add_days(result.indexed)
            self.state.store(self.renderer, result.conversions)
            self.conversions += result.converted
        return infos

    def _static(self) -> None:
        for rel, (file_key, path) in self.static.items():
            if self.writer.stale(rel, file_key):
                self.writer.write(rel, path.read_bytes())


def _whole_days(jobs: list[Job]) -> list[list[Job]]:
    """Jobs (sorted by date) in batches of about ``SOURCES_PER_TASK``, each day's jobs in one batch."""
    batches: list[list[Job]] = []
    for job in jobs:
        if batches and (len(batches[-1]) < SOURCES_PER_TASK or batches[-1][-1].info.date == job.info.date):
            batches[-1].append(job)
        else:
            batches.append([job])
    return batches


def _bare(info: SourceInfo | None) -> SourceInfo | None:
    """A neighbour as a post's links to it need it: without its papers, which a worker need not get."""
    return replace(info, papers=()) if info else None


@contextmanager
def _held_out_of_collection() -> Iterator[None]:
    """What exists when a build starts, and what it has gathered at the end of each of its steps
    (sources, keys, listings' entries), lives until it ends: it is frozen out of the cyclic garbage
    collector's reach (``gc.freeze``, which costs nothing) and put back at the end. Otherwise every
    full collection traverses all of it again: collections took 0.13-0.17 s of adding a post to
    10,000 posts, and take 0.05-0.07 s now (0.02 s at 3,000)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def build_site(options: SiteOptions) -> BuildReport:
    """Build (or bring up to date) the site in ``options.site_dir`` from the posts in ``posts_dir``."""
    with _held_out_of_collection():
        builder = _Builder(options)
        try:
            report = builder.run()
        finally:
            builder.files.sweep()
            builder.search.close()
            builder.state.close()
    log.info("%s", report.summary())
    return report
