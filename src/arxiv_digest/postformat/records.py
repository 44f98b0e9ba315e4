"""The records: what a daily post and a per-paper page hold, and the labels of their reference
formats; built from the pipeline's models as the packaged templates render them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import jinja2

from .jekyll import PostFormatError, apply_liquid_raw, front_matter, names

if TYPE_CHECKING:
    from ..models import PaperPage, Post

log = logging.getLogger(__name__)

PENDING_LINE = "（中文译文待生成，暂显示英文摘要。）"
UNAVAILABLE_LINE = "（中文译文暂不可用：模型多次未能生成有效译文，显示英文摘要。）"


@dataclass(frozen=True)
class Labels:
    """The fixed words of the reference formats, as the packaged templates write them."""

    authors: str = "Authors"
    categories: str = "Categories"
    arxiv: str = "arXiv"
    pdf: str = "PDF"
    page: str = "中文页面"
    explainer: str = "详细解读"
    pending: str = PENDING_LINE  # the translation will be asked for again
    unavailable: str = UNAVAILABLE_LINE  # the model gave up on it
    fetched: str = "抓取总数"
    shown: str = "本页显示"
    late: str = "补录：此前窗口新增的论文"
    # the per-paper page
    published: str = "发布时间"
    reason: str = "理由"
    abstract: str = "摘要"
    arxiv_link: str = "Arxiv"


LABEL = Labels()
TEMPLATE_GLOBALS: dict[str, Any] = {"LABEL": LABEL}


@dataclass(frozen=True)
class PaperRecord:
    """One paper of a daily post. ``title`` and ``authors`` are plain text; the texts are Markdown.
    ``translation`` is None while there is none (pending or unavailable: the post then shows
    ``abstract``, the English one);
    ``abstract`` is None when the post does not say it (a reader-made record of a translated paper)."""

    arxiv_id: str  # version-less; "" when the post names no arXiv link
    version: int | None
    title: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    abs_url: str
    pdf_url: str
    translation: str | None = None
    abstract: str | None = None
    explainer: str | None = None
    page_url: str | None = None  # the paper's own page, root-relative
    page_title: str | None = None  # its Chinese title, the link's text


@dataclass(frozen=True)
class PostRecord:
    """A daily post: its date, front-matter title and tags, the counts its intro gives (None when it
    does not), and its papers in the post's order."""

    date: date | None
    title: str
    tags: tuple[str, ...]
    fetched: int | None
    shown: int | None
    papers: tuple[PaperRecord, ...]

    @property
    def quality(self) -> tuple[int, int, int]:
        """(papers, translated, explained): a rewrite must not lower any of them."""
        translated = sum(p.translation is not None for p in self.papers)
        return len(self.papers), translated, sum(p.explainer is not None for p in self.papers)


@dataclass(frozen=True)
class PageRecord:
    """A per-paper page (``templates/paper.md.j2``). ``reason`` and the abstracts are Markdown,
    ``title`` (Chinese) and ``en_title`` plain text; ``other`` is Markdown the layout does not
    account for (a hand-written page), shown after the rest so nothing is lost."""

    arxiv_id: str
    date: date | None
    title: str
    category: str
    reason: str | None
    tags: tuple[str, ...]
    en_title: str | None
    abstract_zh: str | None
    abstract_en: str | None
    permalink: str
    other: str | None = None


Record = PostRecord | PageRecord


def post_record(post: Post, text: str, env: jinja2.Environment) -> PostRecord:
    """The record of ``post`` as ``text`` renders it: title and tags from the text's front matter,
    every text field through the filters the template uses (``md``, ``md_block``), so it holds the
    Markdown the post holds."""
    inline, block = _markdown(env, "md"), _markdown(env, "md_block")
    front = _front(text)
    papers = tuple(
        PaperRecord(
            arxiv_id=entry.paper.arxiv_id,
            version=entry.paper.version,
            title=" ".join(entry.paper.title.split()) or entry.paper.arxiv_id,  # as the heading shows it
            authors=tuple(author.name for author in entry.paper.authors),
            categories=entry.paper.categories,
            abs_url=entry.paper.abs_url,
            pdf_url=entry.paper.pdf_url,
            translation=block(entry.texts.translation) if entry.texts.translation else None,
            abstract=inline(entry.paper.summary),
            explainer=block(entry.texts.explainer) if entry.texts.explainer else None,
            page_url=entry.page_url,
            page_title=entry.texts.page.title if entry.page_url and entry.texts.page else None,
        )
        for entry in post.entries
    )
    return PostRecord(
        post.window.day,
        str(front.get("title") or ""),
        names(front.get("tags")),
        post.fetched,
        len(post.entries),
        papers,
    )


def page_record(page: PaperPage, env: jinja2.Environment) -> PageRecord:
    """The record of a per-paper page, its texts as ``paper.md.j2`` writes them."""
    inline, block = _markdown(env, "md"), _markdown(env, "md_block")
    return PageRecord(
        arxiv_id=page.paper.arxiv_id,
        date=page.day,
        title=page.info.title,
        category=page.info.category,
        reason=inline(page.info.reason),
        tags=page.info.tags,
        en_title=" ".join(page.paper.title.split()),
        abstract_zh=block(page.translation),
        abstract_en=inline(page.paper.summary),
        permalink=page.permalink,
    )


def _markdown(env: jinja2.Environment, name: str) -> Callable[[str], str]:
    escape = env.filters[name]
    return lambda text: apply_liquid_raw(escape(text))


def _front(text: str) -> dict[str, Any]:
    """Front matter of a post being written; a template that writes none (or broken YAML, which
    Jekyll will report) gives a record without title and tags rather than no post."""
    try:
        found = front_matter(text, "the rendered post")
    except PostFormatError as exc:
        log.warning("%s", exc)
        return {}
    return found[0] if found else {}
