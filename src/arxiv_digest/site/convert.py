"""A source's record and body turned into what the site shows: a post's HTML and its papers' links,
a paper page's parts, a paper's texts for a feed. Everything about a paper
comes from its record; the converted HTML only gives the post's own HTML file and its headings' ids."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from ..postformat import PageRecord, PaperRecord, PostRecord
from .manifest import PaperLink, SourceInfo
from .markdown import Heading, convert, convert_inline, text_html
from .sources import load_page, load_post, load_record

CONTENT_START, CONTENT_END = "<!--post-content-->", "<!--/post-content-->"


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


def built_content(html_file: Path) -> str | None:
    """The converted body kept in an earlier build's HTML of a post, between the markers that wrap
    ``content`` (sanitising strips comments from posts, so a post cannot fake them). Reading it back
    is ~20 times cheaper than converting again, and spares a cache as big as the site."""
    try:
        text = html_file.read_text(encoding="utf-8")
    except OSError:
        return None
    start = text.find(CONTENT_START)
    end = text.find(CONTENT_END, start)
    return text[start + len(CONTENT_START) : end] if start >= 0 and end >= 0 else None


class Library:
    """The sources as the feeds need them again."""

    def __init__(self, posts_dir: Path, site_dir: Path) -> None:
        self.posts_dir = posts_dir
        self.site_dir = site_dir
        self._parts: dict[str, PaperParts] = {}

    def record(self, post: SourceInfo) -> PostRecord:
        """A daily post's record (not kept: records hold whole posts, and feeds need a few papers of
        each)."""
        return load_record(self.posts_dir / post.source)

    def content(self, post: SourceInfo) -> str:
        """A daily post's converted body."""
        found = built_content(self.site_dir / post.url)
        return found if found is not None else convert(load_post(self.posts_dir / post.source)[0]).html

    def parts(self, page: SourceInfo) -> PaperParts:
        """A paper page's parts, kept: a page is in the feeds of its class and of each of its tags."""
        if page.digest not in self._parts:
            self._parts[page.digest] = page_parts(load_page(self.posts_dir / page.source))
        return self._parts[page.digest]
