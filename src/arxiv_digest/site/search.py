"""The site's search: every paper of a converted daily post as a ``SearchDoc``, fed to the paper-level
index (``arxiv_digest.search_index``, which ``static/search.js`` reads).

Workers turn each new or changed post into its papers' documents (``post_docs``, from the post's
record, never its HTML); the parent plans the update (``SiteSearch.plan``: file them under the
post's URL, drop the pages that are gone), and ``apply`` lets the index write what changed. On a
full build of a site without paper pages the workers also index the documents
(``WorkerIndexing``), whole days at a time, and the parent only gathers the postings: no process
holds every paper's text. On an incremental build the plan is applied by a process forked at the
start of the build (``build``), and only that process loads the index's code (``search_index``,
with numpy): this module needs only ``search_docs``. A paper that has its own page is found as
that page (its link, Chinese title, class and tags, from the page's ``SourceInfo``) with the daily
post's text, so each paper is one hit; a paper page whose paper is in no daily post is found by
its own texts. The index keeps its state in a folder outside the published site.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..postformat import PageRecord, PostRecord
from ..search_docs import EPOCH, SearchDoc, SearchUpdate, docs_digest, indexed_digests, updatable
from .beside import Beside
from .manifest import SourceInfo, same
from .markdown import markdown_text
from .sources import load_page, load_record

if TYPE_CHECKING:
    from ..search_index import IndexedDays, SearchIndexWriter
    from ..search_segments import SegmentInfo

FOLDER = "search"
SCRIPT = "static/search.js"  # the search page's script, published only with search on


_MARKUP = re.compile(r"<[^>]*>|&#?\w+;|\]\([^)\s]*\)")


def _words(markdown: str) -> str:
    """Markdown whose words are all that search needs of it (the explainer is indexed, never shown):
    tags, character references and link targets dropped; the rest of the markup is punctuation,
    which splits words anyway. A tenth of the cost of ``markdown_text`` on an explainer."""
    return _MARKUP.sub(" ", markdown)


def post_docs(info: SourceInfo, record: PostRecord, body: str = "") -> list[SearchDoc]:
    """A converted post's papers (``info`` with its papers' links), linked to their headings; a post
    without papers is one document of its whole text (``body``, its Markdown)."""
    if not record.papers:
        return [SearchDoc(info.url, info.date, info.title, translation=markdown_text(body))]
    return [
        SearchDoc(
            f"{info.url}#{link.anchor}" if link.anchor else info.url,
            info.date,
            paper.title,
            authors=paper.authors,
            categories=paper.categories,
            translation=markdown_text(paper.translation or paper.abstract or ""),
            explainer=_words(paper.explainer) if paper.explainer else "",
            arxiv_id=paper.arxiv_id,
            source=info.url,
        )
        for paper, link in zip(record.papers, info.papers, strict=True)
    ]


def page_doc(info: SourceInfo, record: PageRecord) -> SearchDoc:
    """A paper page whose paper is in no daily post, found by what the page says."""
    return SearchDoc(
        info.url,
        info.date,
        record.en_title or info.title,
        title_zh=info.title,
        translation=markdown_text(record.abstract_zh or record.abstract_en or ""),
        paper_class="、".join(info.classes),
        tags=info.tags,
        arxiv_id=info.arxiv_id,
    )


def _as_filed(docs: list[SearchDoc], pages: Mapping[str, SourceInfo]) -> list[SearchDoc]:
    """A post's documents as the index gets them: a paper that has its own page (``pages``, by
    arXiv id) is found as that page."""
    return [_shown_by_page(doc, pages[doc.arxiv_id]) if doc.arxiv_id in pages and doc.source else doc for doc in docs]


def _shown_by_page(doc: SearchDoc, page: SourceInfo) -> SearchDoc:
    return replace(doc, url=page.url, title_zh=page.title, paper_class="、".join(page.classes), tags=page.tags)


@dataclass(frozen=True)
class KeptIndex:
    """What a build that converts every post but keeps the index (the renderer changed, the code that
    makes the documents did not) knows of it: each page's digest, so that the workers hand back only
    the documents that differ, and the paper pages (by arXiv id) that papers are found as."""

    digests: Mapping[str, str]
    pages: Mapping[str, SourceInfo]

    def holds(self, docs: list[SearchDoc]) -> bool:
        """Whether the index has these very documents of a post."""
        return bool(docs) and self.digests.get(docs[0].page) == docs_digest(_as_filed(docs, self.pages))


@dataclass(frozen=True)
class SearchPlan:
    """An incremental update of the index: the pages to drop, then the papers to file (each under
    its page, which replaces what the page had)."""

    removed: tuple[str, ...]
    added: tuple[SearchDoc, ...]


@dataclass(frozen=True)
class WorkerIndexing:
    """Where the workers of a full build index the papers of the posts they convert, whole days at a
    time (only on a site without paper pages: there a post's documents need no other source)."""

    folder: Path
    cutoff: int  # the hot segment's first day

    def index(self, docs: list[list[SearchDoc]]) -> IndexedDays:
        from ..search_index import index_days  # (see the module docstring)

        return index_days(self.folder, {found[0].page: found for found in docs if found}, self.cutoff)


class SiteSearch:
    """One build's index update. ``fresh``: the index starts empty (first build, a full build asked
    for, a change to the code that makes the documents, or a state that does not match the published
    files), so every source must be converted. Not ``enabled`` (``site.search: false``), there is no
    index: its update removes one an earlier build left, and the index's code is never loaded."""

    def __init__(self, site_dir: Path, state_dir: Path, posts_dir: Path, rebuild: bool, enabled: bool = True) -> None:
        self.folder, self.state_dir = site_dir / FOLDER, state_dir / FOLDER
        self.posts_dir = posts_dir
        self.enabled = enabled
        self.fresh = enabled and (rebuild or not updatable(self.folder, self.state_dir))
        self._writer: SearchIndexWriter | None = None
        self._segments: Beside[None, tuple[SegmentInfo, SegmentInfo]] | None = None  # being written (``start``)

    @property
    def index(self) -> SearchIndexWriter:
        """The index's writer, opened by the first use (see the module docstring)."""
        return self._writer or self._open()

    def _open(self) -> SearchIndexWriter:
        from ..search_index import SearchIndexWriter

        self._writer = SearchIndexWriter(self.folder, self.state_dir, rebuild=self.fresh)
        return self._writer

    def worker_indexing(self, daily: list[SourceInfo], pages: bool) -> WorkerIndexing | None:
        """How the workers index as they convert, on a full build of a site without paper pages
        (the parent then only gathers the postings); None when the documents come back to the parent."""
        if not self.fresh or pages or not daily:  # (never fresh when not enabled)
            return None
        newest = max(info.date for info in daily)
        return WorkerIndexing(self.folder, self.index.hot_cutoff((newest - EPOCH).days))

    @property
    def kept(self) -> bool:
        """There is an index, and this build updates it."""
        return self.enabled and not self.fresh

    def kept_index(self, pages: list[SourceInfo]) -> KeptIndex | None:
        """The index with its paper ``pages``, for a build that converts every post but keeps it;
        None when the index starts empty or there is none."""
        return KeptIndex(indexed_digests(self.state_dir), {i.arxiv_id: i for i in pages}) if self.kept else None

    def add_days(self, indexed: IndexedDays) -> None:
        self.index.add_days(indexed)

    def plan(
        self,
        before: dict[str, SourceInfo],
        now: dict[str, SourceInfo],
        docs: dict[str, list[SearchDoc]],
    ) -> SearchPlan:
        """What the index must drop and file. ``before`` and ``now``: every source by name, as the
        last build left it and as it is; ``docs``: the documents of the daily posts converted in this
        build. A daily post is filed again from its record when one of its papers' pages came, went
        or changed; a paper page is filed on its own while its paper is in no daily post."""
        if not self.enabled:
            return SearchPlan((), ())
        pages = {i.arxiv_id: i for i in now.values() if i.is_page}
        with_pages = bool(pages) or any(i.is_page for i in before.values())
        # (only paper pages need every post's papers: a build decodes the papers of the posts it shows)
        in_posts = {p.arxiv_id for i in now.values() if not i.is_page for p in i.papers} if with_pages else set()
        was_in_posts = {p.arxiv_id for i in before.values() if not i.is_page for p in i.papers} if with_pages else set()
        touched = {i.arxiv_id for i in before.values() if i.is_page and not same(now.get(i.source), i)}
        touched |= {i.arxiv_id for i in now.values() if i.is_page and not same(before.get(i.source), i)}
        removed = [info.url for source, info in before.items() if source not in now or now[source].url != info.url]
        filed = dict(docs)
        for source, info in now.items():
            old = before.get(source)
            if info.is_page:
                orphan = info.arxiv_id not in in_posts
                if orphan and (old != info or info.arxiv_id in was_in_posts):
                    filed[source] = [page_doc(info, load_page(self.posts_dir / source))]
                elif not orphan and old and old.arxiv_id not in was_in_posts:
                    removed.append(info.url)
            elif touched and source not in filed and any(p.arxiv_id in touched for p in info.papers):
                filed[source] = post_docs(info, load_record(self.posts_dir / source))
        removed += [now[source].url for source in filed]  # (each filed page is replaced whole)
        added = [doc for found in filed.values() for doc in _as_filed(found, pages)]
        return SearchPlan(tuple(removed), tuple(added))

    def opened(self) -> Callable[[SearchPlan], SearchUpdate]:
        """``apply``, with the index's code loaded and its writer open: what a process forked at the
        start of an incremental build gets ready while the build reads its sources."""
        if self._writer is None and self.enabled:
            self._open()
        return self.apply

    def apply(self, plan: SearchPlan) -> SearchUpdate:
        """The plan carried out and the index written; the writer is closed."""
        if not self.enabled:
            return self._removed()
        try:
            self._file(plan)
            return self.index.finish()
        finally:
            self.close()

    def start(self, plan: SearchPlan) -> Callable[[], SearchUpdate]:
        """``apply`` on a full build, whose new segments are written by a process forked now (see
        ``SearchIndexWriter.prepare_fresh``: ~2 s at 1,000 posts, which the build's listings take
        as long to render): the result waits for it and publishes them."""
        try:
            self._file(plan)
            # (this process lets the postings go: only the forked one holds them)
            self._segments = Beside.now("the search index's segments", self.index.prepare_fresh())
        except BaseException:
            self.close()
            raise
        return self._publish

    def _publish(self) -> SearchUpdate:
        segments, self._segments = self._segments, None
        try:
            if segments is None:
                raise RuntimeError("nothing to publish: start was not called")
            with segments:
                written = segments.result()
            return self.index.publish_fresh(written)
        finally:
            self.close()

    def _removed(self) -> SearchUpdate:
        """An index an earlier build published, and its state, removed: search is off."""
        removed = sorted(str(path.relative_to(self.folder)) for path in self.folder.rglob("*") if path.is_file())
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return SearchUpdate((), tuple(removed), 0, 0, 0)

    def _file(self, plan: SearchPlan) -> None:
        for page in plan.removed:
            self.index.remove(page)
        for doc in plan.added:
            self.index.add(doc)

    def close(self) -> None:
        if self._segments is not None:  # a build that failed before it published them
            self._segments.stop()
            self._segments = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
