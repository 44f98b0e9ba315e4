"""A source's record and body turned into what the site shows: a post's HTML and its papers' links,
a paper page's parts, a paper's texts for a feed. Everything about a paper
comes from its record; the converted HTML only gives the post's own HTML file and its headings' ids."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import astuple, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ..postformat import PageRecord, PaperRecord
from .manifest import BODY, BuildState, PaperLink, SourceInfo, pack, unpack
from .markdown import Heading, convert, convert_inline, text_html
from .options import SiteError
from .sources import load_page, load_post, load_record

_NOT_ALNUM = re.compile(r"[\W_]+")


def _match_key(text: str) -> str:
    """A title reduced to its letters and digits: a heading shows the same title whatever Markdown
    escaping, emphasis or maths markup the post wrote around it."""
    return _NOT_ALNUM.sub("", text.casefold())


def paper_links(papers: tuple[PaperRecord, ...], headings: tuple[Heading, ...]) -> tuple[PaperLink, ...]:
    """Each paper with the heading that shows its title (in order, each heading used once); a paper
    with none (a template that writes no title heading) is linked to the post itself."""
    waiting: dict[str, list[Heading]] = {}
    for heading in headings:
        waiting.setdefault(_match_key(heading.text), []).append(heading)
    links = []
    for paper in papers:
        title_key = _match_key(paper.title)
        found = waiting.get(title_key) if title_key else None
        if found:
            heading = found.pop(0)
            links.append(PaperLink(heading.id, heading.html, paper.categories, paper.arxiv_id))
        else:
            links.append(PaperLink("", text_html(paper.title), paper.categories, paper.arxiv_id))
    return tuple(links)


@dataclass(frozen=True)
class PaperParts:
    """A paper page's body in parts, each sanitised HTML: the reason for its class, the English
    title (inline), the Chinese and the English abstract, and ``other``: what the layout does not
    account for (a hand-written page), so nothing is lost. An empty part is false."""

    reason: Markup
    title: Markup
    abstract_zh: Markup
    abstract_en: Markup
    other: Markup


def pack_body(html: bytes, headings: tuple[Heading, ...]) -> bytes:
    """A post's conversion as the build state keeps it: its HTML as UTF-8, which its page is built
    around without decoding it (``render_around``), and its headings."""
    return pack((html, tuple((h.level, h.id, h.html) for h in headings)))


def unpack_body(packed: bytes) -> tuple[bytes, tuple[Heading, ...]]:
    html, headings = unpack(packed)
    return html, tuple(Heading(*h) for h in headings)


def pack_parts(parts: PaperParts) -> bytes:
    return pack(tuple(map(str, astuple(parts))))


def unpack_parts(packed: bytes) -> PaperParts:
    return PaperParts(*map(Markup, unpack(packed)))


def page_parts(record: PageRecord) -> PaperParts:
    return PaperParts(
        reason=Markup(convert_inline(record.reason) if record.reason else ""),
        title=Markup(text_html(record.en_title) if record.en_title else ""),
        abstract_zh=_html(record.abstract_zh),
        abstract_en=_html(record.abstract_en),
        other=_html(record.other),
    )


def _html(markdown: str | None) -> Markup:
    return Markup(convert(markdown).html if markdown else "")


@dataclass(frozen=True)
class PaperTexts:
    """A daily post's paper as a feed shows it, as sanitised HTML: the translation, or the English
    abstract while it is ``pending``, and the explainer."""

    text: Markup
    explainer: Markup
    pending: bool


def paper_texts(paper: PaperRecord) -> PaperTexts:
    pending = paper.translation is None
    return PaperTexts(_html(paper.abstract if pending else paper.translation), _html(paper.explainer), pending)


FeedPaper = tuple[PaperRecord, PaperTexts]


def _convert_papers(path: Path, indexes: set[int]) -> dict[int, bytes]:
    """Papers of a daily post as its category feeds show them, packed: the record's facts and the
    converted texts."""
    record = load_record(path)
    if max(indexes) >= len(record.papers):
        raise SiteError(f"{path} changed during the build")
    converted = {}
    for index in indexes:
        paper = record.papers[index]
        texts = paper_texts(paper)
        converted[index] = pack((astuple(paper), str(texts.text), str(texts.explainer), texts.pending))
    return converted


class Library:
    """The sources as the feeds need them again: records, and conversions from the build state's
    cache (converted and kept when missing; ``conversions`` counts those)."""

    def __init__(
        self, posts_dir: Path, state: BuildState, renderer: str, run: Callable[[list[Callable[[], Any]]], list[Any]]
    ) -> None:
        self.posts_dir = posts_dir
        self.state = state
        self.renderer = renderer
        self.run = run  # runs tasks, in forked processes when there are many
        self.conversions = 0
        self._parts: dict[str, PaperParts] = {}
        self._new: list[tuple[str, int, bytes]] = []

    def _kept(self, source: SourceInfo, part: int) -> bytes | None:
        return self.state.conversion(source.digest, part, self.renderer)

    def _keep(self, source: SourceInfo, part: int, packed: bytes) -> None:
        self.conversions += 1
        self._new.append((source.digest, part, packed))

    def keep(self) -> None:
        """Store the conversions made since the last call, in one transaction."""
        self.state.store(self.renderer, self._new)
        self._new = []

    def feed_entries(self, categories: Collection[str], basis: str) -> dict[str, Any]:
        """The entries each category feed of ``categories`` last had, where rendered on ``basis``, as
        ``keep_feed`` was given them."""
        return {name: unpack(packed) for name, packed in self.state.feed_entries(categories, basis).items()}

    def keep_feed(self, category: str, basis: str, entries: Any) -> None:
        """A category feed's entries (marshal-able), for the next build's feed of it."""
        self.state.keep_feed(category, basis, pack(entries))

    def content(self, post: SourceInfo) -> str:
        """A daily post's converted body."""
        packed = self._kept(post, BODY)
        if packed is None:
            converted = convert(load_post(self.posts_dir / post.source)[0])
            packed = pack_body(converted.html.encode(), converted.headings)
            self._keep(post, BODY, packed)
        return unpack_body(packed)[0].decode()

    def papers(self, wanted: list[tuple[SourceInfo, set[int]]]) -> dict[tuple[str, int], FeedPaper]:
        """Papers of daily posts (each with the indexes wanted) and their texts, as category feeds
        show them: kept in the build state, else read from each post's record and converted, in
        processes forked for it when there are many."""
        by_digest = self.state.paper_conversions({post.digest for post, _ in wanted}, self.renderer)
        kept = {post.source: by_digest[post.digest] for post, _ in wanted}
        missing = [(post, indexes - kept[post.source].keys()) for post, indexes in wanted]
        missing = [(post, indexes) for post, indexes in missing if indexes]
        tasks: list[Callable[[], Any]] = [
            partial(_convert_papers, self.posts_dir / post.source, indexes) for post, indexes in missing
        ]
        for (post, _), converted in zip(missing, self.run(tasks), strict=True):
            kept[post.source].update(converted)
            self._new += [(post.digest, index, packed) for index, packed in converted.items()]
            self.conversions += len(converted)
        found = {}
        for post, indexes in wanted:
            for index in indexes:
                fields, text, explainer, pending = unpack(kept[post.source][index])
                found[post.source, index] = (PaperRecord(*fields), PaperTexts(Markup(text), Markup(explainer), pending))
        return found

    def parts(self, page: SourceInfo) -> PaperParts:
        """A paper page's parts, kept: a page is in the feeds of its class and of each of its tags."""
        if page.digest not in self._parts:
            packed = self._kept(page, BODY)
            if packed is None:
                packed = pack_parts(page_parts(load_page(self.posts_dir / page.source)))
                self._keep(page, BODY, packed)
            self._parts[page.digest] = unpack_parts(packed)
        return self._parts[page.digest]
