"""Markdown posts -> static HTML site: paginated index, one page per post, category pages, a monthly
archive, Atom feeds (site-wide and per category) and a static search index; incremental by manifest.
Per-paper pages (front matter with ``arxiv_id``, written by ``templates/paper.md.j2``) get their own
page, class and tag pages with Atom feeds, and search entries, but are not listed as daily posts.

Choices, and why:

* Markdown goes through pulldown-cmark (Rust, ``pyromark``), not Python-Markdown: ``md_in_html``
  leaves the posts' ``<div markdown="1">`` unconverted when it sits in a raw ``<details>``, and its
  lists cannot interrupt a paragraph, so it renders the posts unlike kramdown does. CommonMark HTML
  blocks end at a blank line, which gives kramdown's result for this format. (cmark-gfm, via
  ``cmarkgfm``, renders the same but leaks each parsed tree, ~0.75 MB a post, and is 3x slower.)
  Two kramdown rules are applied on top: ``1)`` is not a list marker, and ``~`` is not strikethrough
  (Chinese text writes ranges as ``2~6``).
* The HTML is then sanitised with ammonia (``nh3``) against a whitelist: the pipeline's escaping is one
  layer, and a post must not be able to run anything even when that layer has a bug.
* LaTeX (``$…$``, ``$$…$$``) is kept away from Markdown, so ``_`` and ``*`` stay TeX, and shown as its
  source in ``<span class="math">``: no script, the same text in pages, feeds and search results, no
  render failures on arXiv's ad-hoc macros, and this blog's readers read TeX. KaTeX would add ~1 MB of
  vendored files and client-side work to every page for the few titles that carry maths.
* Search is an own index (see ``_SearchIndex``), not pagefind: ``pagefind[extended]`` installs from PyPI
  and segments Chinese, but on the 1,000-post benchmark it took 27.7 s and 2 GB of RSS, and it cannot
  update an index, so adding one post would re-index the whole site.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
import threading
import time
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import partial
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urljoin

import jinja2
import nh3
import pyromark
import yaml
from markupsafe import Markup

from . import templating
from .errors import DigestError
from .files import write_atomic

log = logging.getLogger(__name__)

MANIFEST = ".build-manifest.json"
CONTENT_START, CONTENT_END = "<!--post-content-->", "<!--/post-content-->"
FEED_POSTS = 10
CATEGORY_FEED_PAPERS = 20
SEARCH_SHARDS = 128
TEMPLATES = (
    *("base.html", "_macros.html", "index.html", "post.html", "category.html", "categories.html"),
    *("archive.html", "search.html", "feed.xml", "paper.html", "topic.html", "topics.html"),
)
PARALLEL_MIN_POSTS = 48  # below this, starting worker processes costs more than it saves
POSTS_PER_TASK = 25


class SiteError(DigestError):
    """A post, template or output path that stops the build; the message names the file."""


@dataclass(frozen=True)
class SiteOptions:
    """What to build. ``templates_dirs`` are searched first; the packaged ``templates/site`` comes last
    and can still be reached as ``{% extends "!default/base.html" %}``."""

    posts_dir: Path
    site_dir: Path
    templates_dirs: tuple[Path, ...] = ()
    title: str = "arXiv Daily"
    base_url: str = ""
    per_page: int = 20
    incremental: bool = True
    papers_per_page: int = 50  # paper pages per class or tag page


@dataclass(frozen=True)
class BuildReport:
    """What a build did; ``written`` lists site-relative paths, for tests and ``--verbose``."""

    posts: int
    written: tuple[str, ...]
    skipped: int
    removed: tuple[str, ...]
    seconds: float
    full: bool
    pages: int = 0  # per-paper pages; ``posts`` counts the daily posts only

    def summary(self) -> str:
        kind = "full" if self.full else "incremental"
        pages = f"{self.pages} paper pages, " if self.pages else ""
        return (
            f"Done: {self.posts} posts, {pages}{len(self.written)} files written, {self.skipped} unchanged, "
            f"{len(self.removed)} removed ({kind} build) in {self.seconds:.2f} s"
        )


# ---------------------------------------------------------------------------------------------------
# Posts: front matter, Liquid raw, Markdown, sanitising, papers


class Paper(NamedTuple):
    """One ``## title`` section that carries the ``- **Authors**:`` line of the post format (a named
    tuple: the manifest holds one per paper of every post, and tuples load fastest)."""

    anchor: str
    title: str  # sanitised inline HTML
    categories: tuple[str, ...]
    arxiv_id: str


@dataclass(frozen=True, slots=True)
class PostMeta:
    """Everything the listing pages need about a post, kept in the manifest between builds. A
    per-paper page is one too: it has an ``arxiv_id``, its ``classes`` (front-matter ``categories``:
    its class in the pipeline's taxonomy) and ``tags``, and one ``papers`` entry for its English title."""

    source: str
    digest: str
    title: str
    date: date
    url: str
    tags: tuple[str, ...]
    papers: tuple[Paper, ...] = ()
    search_id: int = -1
    stamp: str = ""  # size and mtime of the source, to skip reading unchanged files
    arxiv_id: str = ""  # only on a per-paper page
    classes: tuple[str, ...] = ()

    @property
    def is_paper(self) -> bool:
        return bool(self.arxiv_id)

    @property
    def en_title(self) -> str:
        """A paper page's English title (sanitised inline HTML), once converted."""
        return self.papers[0].title if self.is_paper and self.papers else ""

    @property
    def categories(self) -> tuple[str, ...]:
        """Front-matter tags other than ``arxiv``, then every paper's categories, first seen first."""
        names = [t for t in self.tags if t.lower() != "arxiv"]
        names += [c for p in self.papers for c in p.categories]
        return tuple(dict.fromkeys(names))

    @property
    def month(self) -> str:
        return f"{self.date:%Y-%m}"

    def to_json(self) -> dict[str, Any]:
        extra = {"arxiv_id": self.arxiv_id, "classes": list(self.classes)} if self.is_paper else {}
        return extra | {
            "source": self.source,
            "digest": self.digest,
            "title": self.title,
            "date": self.date.isoformat(),
            "url": self.url,
            "tags": list(self.tags),
            "papers": [[p.anchor, p.title, list(p.categories), p.arxiv_id] for p in self.papers],
            "search_id": self.search_id,
            "stamp": self.stamp,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PostMeta:
        papers = tuple(Paper(a, t, tuple(c), i) for a, t, c, i in data["papers"])
        return cls(
            data["source"],
            data["digest"],
            data["title"],
            date.fromisoformat(data["date"]),
            data["url"],
            tuple(data["tags"]),
            papers,
            data["search_id"],
            data["stamp"],
            data.get("arxiv_id", ""),
            tuple(data.get("classes", ())),
        )


@dataclass(frozen=True, slots=True)
class Content:
    """A converted post body: the part before the first ``<h2>`` and one HTML string per ``<h2>``."""

    intro: str
    sections: tuple[tuple[str, str], ...]  # (anchor, html)

    @property
    def html(self) -> str:
        return self.intro + "".join(section for _, section in self.sections)


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S | re.M)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_JEKYLL_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})-(.+)$")
_ANY_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise SiteError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _front_matter(text: str, path: Path) -> tuple[dict[str, Any], int] | None:
    """The YAML front matter and where the body starts, or None without front matter (Jekyll copies
    such files instead of rendering them)."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None
    try:
        front = yaml.load(_XML_INVALID.sub("", match[1]), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as exc:
        raise SiteError(f"{path}: front matter is not valid YAML: {exc}") from None
    if not isinstance(front, dict):
        raise SiteError(f"{path}: front matter must be a mapping, not {type(front).__name__}")
    return front, match.end()


def read_body(path: Path) -> str | None:
    """The body of a post whose front matter was read before (by the scan), without parsing it again;
    None when it has lost its front matter since."""
    text = _decode(path.read_bytes(), path)
    match = _FRONT_MATTER.match(text)
    return _XML_INVALID.sub("", text[match.end() :]) if match else None


def _head(source: str, path: Path, digest: str, stamp: str, front: dict[str, Any]) -> PostMeta:
    """Date from ``date:``, else the Jekyll file name ``YYYY-MM-DD-slug``, else any date in the name."""
    stem = path.stem
    jekyll = _JEKYLL_NAME.match(stem)
    slug = jekyll[2] if jekyll else stem
    value = front.get("date")
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = str(value) if value else (jekyll[1] if jekyll else "")
        found = _ANY_DATE.search(text) or _ANY_DATE.search(stem)
        if not found:
            raise SiteError(f"{path}: no date (front matter `date:` or a YYYY-MM-DD file name)")
        try:
            day = date.fromisoformat(found[0])
        except ValueError:
            raise SiteError(f"{path}: invalid date {found[0]!r}") from None
    url = _permalink(str(front["permalink"]), path) if front.get("permalink") else f"{day:%Y/%m/%d}/{_slug(slug)}.html"
    title = str(front.get("title") or stem)
    arxiv_id = front.get("arxiv_id")
    classes: tuple[str, ...] = ()
    if arxiv_id is not None and str(arxiv_id).strip():
        if not isinstance(arxiv_id, str) and slug.startswith(str(arxiv_id)):
            arxiv_id = slug  # unquoted YAML read 2601.10010 as a number and dropped the trailing 0
        arxiv_id, classes = str(arxiv_id).strip(), _names(front.get("categories"))
    else:
        arxiv_id = ""
    return PostMeta(
        source, digest, title, day, url, _names(front.get("tags")), stamp=stamp, arxiv_id=arxiv_id, classes=classes
    )


def _names(value: Any) -> tuple[str, ...]:
    """A front-matter list (``tags``, ``categories``); a string is split on spaces, as Jekyll does."""
    if not value:
        return ()
    names = value.split() if isinstance(value, str) else value if isinstance(value, list) else [value]
    return tuple(dict.fromkeys(str(n).strip() for n in names if n is not None and str(n).strip()))


def _permalink(value: str, path: Path) -> str:
    """A ``permalink:`` as a site-relative file: ``/a/b/`` -> ``a/b/index.html``, ``/a/b`` -> ``a/b.html``."""
    parts = [p for p in value.strip().split("/") if p]
    if not parts or any(p in (".", "..") or "\\" in p for p in parts):
        raise SiteError(f"{path}: unusable permalink {value!r}")
    rel = "/".join(_slug(p) for p in parts)
    if value.endswith("/"):
        return rel + "/index.html"
    return rel if rel.endswith((".html", ".htm")) else rel + ".html"


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text).strip("-") or "-"


_RAW_OPEN = re.compile(r"\{%-?\s*raw\s*-?%\}")
_RAW_CLOSE = re.compile(r"\{%-?\s*endraw\s*-?%\}")


def apply_liquid_raw(text: str) -> str:
    """What Jekyll's Liquid pass leaves of a post: ``{% raw %}…{% endraw %}`` becomes its content,
    verbatim. No other Liquid is run: the pipeline wraps every ``{{``/``{%`` that arXiv or the LLM
    wrote, so anything else is text and stays text. An unclosed raw tag fails, as in Jekyll."""
    if "{%" not in text:
        return text
    parts, pos = [], 0
    while opening := _RAW_OPEN.search(text, pos):
        closing = _RAW_CLOSE.search(text, opening.end())
        if closing is None:
            raise ValueError("'raw' tag was never closed")
        parts += [text[pos : opening.start()], text[opening.end() : closing.start()]]
        pos = closing.end()
    parts.append(text[pos:])
    return "".join(parts)


_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\1[`~]*[ \t]*$|\Z)", re.S | re.M)
_SPAN = re.compile(  # the lookahead lets the regex engine skip to the next ` or $ quickly
    r"(?=[`$])(?:(?P<code>(?P<ticks>`+)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=ticks)(?!`))"
    r"|\$\$(?P<display>(?:(?!\n[ \t]*\n)[^$])+?)\$\$"
    r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?![\d$]))",
    re.S,
)
_PAREN_ITEM = re.compile(r"^((?:[ \t]*(?:[-+*]|>)[ \t]+)*[ \t]*\d{1,9})\)(?=[ \t]|$)", re.M)
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")


def _protect(text: str) -> tuple[str, list[str]]:
    """Swap maths for placeholders (outside code; pulldown-cmark's own maths option is laxer and turns
    ``$5 and $10`` into maths) and escape ``1)``, so the parser reads the post as kramdown does."""
    maths: list[str] = []

    def swap(match: re.Match[str]) -> str:
        if match["code"] is not None:
            return match[0]
        tex, css = (
            ("$$" + match["display"] + "$$", "math display")
            if match["display"]
            else ("$" + match["inline"] + "$", "math")
        )
        maths.append(f'<span class="{css}">{html.escape(html.unescape(tex), quote=False)}</span>')
        return f"\ue000{len(maths) - 1}\ue001"

    out, pos = [], 0
    for fence in _FENCE.finditer(text) if "```" in text or "~~~" in text else ():
        out += [_PAREN_ITEM.sub(r"\1\\)", _SPAN.sub(swap, text[pos : fence.start()])), fence[0]]
        pos = fence.end()
    out.append(_PAREN_ITEM.sub(r"\1\\)", _SPAN.sub(swap, text[pos:])))
    return "".join(out), maths


_CLEANER = nh3.Cleaner(
    tags={
        *("details", "summary", "div", "p", "ul", "ol", "li", "a", "strong", "em", "code", "pre"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "br", "span", "del"),
        *("table", "thead", "tbody", "tr", "th", "td"),
    },
    attributes={"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}, "details": {"open"}},
    allowed_classes={"span": {"math", "display"}},
    url_schemes={"http", "https"},
)
_HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>", re.S)
_TAG = re.compile(r"<[^>]*>")


def plain(fragment: str) -> str:
    """Text of a sanitised HTML fragment."""
    return html.unescape(_TAG.sub("", fragment)).strip()


def _kramdown_id(text: str) -> str:
    """kramdown's ``auto_ids``, so anchors match a Jekyll build of the same posts."""
    slug = re.sub(r"[^a-zA-Z0-9 -]", "", re.sub(r"^[^a-zA-Z]+", "", text)).replace(" ", "-").lower()
    return slug or "section"


def markdown_to_html(body: str) -> str:
    """A post body after Liquid -> sanitised HTML whose headings carry kramdown's ids."""
    text, maths = _protect(body)
    raw = pyromark.html(text, options=pyromark.Options.ENABLE_TABLES)
    if maths:
        raw = _PLACEHOLDER.sub(lambda m: maths[int(m[1])] if int(m[1]) < len(maths) else "", raw)
    used: dict[str, int] = {}

    def add_id(match: re.Match[str]) -> str:
        anchor = _kramdown_id(plain(match[2]))
        seen = used.get(anchor, 0)
        used[anchor] = seen + 1
        anchor = f"{anchor}-{seen}" if seen else anchor
        return f'<h{match[1]} id="{anchor}">{match[2]}</h{match[1]}>'

    return _fold_authors(_HEADING.sub(add_id, _CLEANER.clean(raw)))


_AUTHORS = re.compile(r"<li><strong>Authors</strong>: ([^<]*)</li>")
_SUMMARY = re.compile(r"<summary>.*?</summary>", re.S)
AUTHORS_SHOWN, AUTHORS_FOLDED = 10, 20


def _fold_authors(body_html: str) -> str:
    """An author list longer than 20 names (arXiv has papers with hundreds) would fill a phone's
    screen: show ten and fold the rest into a ``<details>`` that says how many there are."""

    def fold(match: re.Match[str]) -> str:
        names = match[1].split(", ")
        if len(names) <= AUTHORS_FOLDED:
            return match[0]
        shown, rest = ", ".join(names[:AUTHORS_SHOWN]), ", ".join(names[AUTHORS_SHOWN:])
        return (
            f'<li><strong>Authors</strong>: {shown}, <details class="more-authors">'
            f"<summary>等 {len(names)} 位作者</summary>{rest}</details></li>"
        )

    return _AUTHORS.sub(fold, body_html)


_H2 = re.compile(r'<h2 id="([^"]*)">(.*?)</h2>', re.S)
_FIELD = re.compile(r"<li><strong>(Authors|Categories|arXiv)</strong>:\s*(.*?)</li>", re.S)
_ARXIV_ID = re.compile(r"(?:abs|pdf)/([^\s<\"]+?)(?:v\d+)?(?:\.pdf)?(?=[\s<\"]|$)")
_TRANSLATION = re.compile(r"</ul>(.*?)(?:<details|<hr|\Z)", re.S)


def split_sections(body_html: str) -> Content:
    """Cut converted HTML at each ``<h2 id=…>``: a section is one paper in the post format."""
    starts = [m.start() for m in _H2.finditer(body_html)]
    bounds = [*starts, len(body_html)]
    sections = tuple(
        (_H2.match(body_html, start)[1], body_html[start:end])  # type: ignore[index]
        for start, end in zip(starts, bounds[1:], strict=True)
    )
    return Content(body_html[: bounds[0]], sections)


def _paper(anchor: str, section: str) -> tuple[Paper, list[str]] | None:
    """The paper in a section and its search document row [anchor, title, authors, arXiv id,
    Chinese text]; None for a section without an Authors line."""
    fields = dict(_FIELD.findall(section[: section.find("</ul>") + 5]))
    if "Authors" not in fields:
        return None
    title = _H2.match(section)[2]  # type: ignore[index]
    found = _ARXIV_ID.search(fields.get("arXiv", ""))
    translation = _TRANSLATION.search(section)
    categories = tuple(c.strip() for c in plain(fields.get("Categories", "")).split(",") if c.strip())
    paper = Paper(anchor, title, categories, found[1] if found else "")
    names = plain(_SUMMARY.sub("", fields["Authors"])).split(",")
    authors = ", ".join(a.strip() for a in names if a.strip())
    return paper, [anchor, plain(title), authors, paper.arxiv_id, plain(translation[1]) if translation else ""]


# ---------------------------------------------------------------------------------------------------
# Per-paper pages and links between pages


_PAPER_BODY = re.compile(  # the layout of templates/paper.md.j2 (and the reference paper page)
    r"\A\s*#[ \t][^\n]*\n"  # the Chinese title, also in the front matter
    r"(?:\s*发布时间：[^\n]*\n)?"
    r"\s*`[^`\n]*\n[ \t]*\n理由：(?P<reason>[^`]*)`(?:[ \t]*`[^`\n]*`)*[ \t]*\n"  # class, reason, tags
    r"\s*(?P<title>(?:>[^\n]*\n)+)"
    r"\s*#[ \t]+摘要[ \t]*\n"
    r"\s*(?P<zh>(?:>[^\n]*(?:\n|\Z))+)"
    r"\s*(?P<en>(?:>[^\n]*(?:\n|\Z))+)"
    r"\s*(?P<rest>.*)\Z",
    re.S,
)
_ARXIV_LINK = re.compile(r"\A\[Arxiv\]\([^)\s]*\)\s*\Z")
_PART = re.compile(r"<!--paper:(\w+)-->(.*?)<!--/paper:\1-->", re.S)
_PARAGRAPH = re.compile(r"\A\s*<p>(.*)</p>\s*\Z", re.S)


class _Part(Markup):
    """A part of a paper page as the page template gets it: wrapped in comments that let a later
    build read it back (sanitising strips comments from the part itself, so it cannot fake them),
    and false when the part is empty, so ``{% if parts.reason %}`` still means what it says."""

    def __bool__(self) -> bool:
        found = _PART.fullmatch(self)
        return bool(found[2]) if found else len(self) > 0


_NO_HTML = Markup()


@dataclass(frozen=True)
class PaperParts:
    """A paper page's body in parts, each sanitised HTML: the reason for its class, the English
    title (inline), the Chinese and the English abstract, and ``other``: what follows them, or the
    whole body when it is not in the paper-page layout (a hand-edited page), so nothing is lost."""

    reason: Markup = _NO_HTML
    title: Markup = _NO_HTML
    abstract_zh: Markup = _NO_HTML
    abstract_en: Markup = _NO_HTML
    other: Markup = _NO_HTML

    def marked(self) -> PaperParts:
        return PaperParts(
            **{name: _Part(f"<!--paper:{name}-->{value}<!--/paper:{name}-->") for name, value in self._items()}
        )

    def _items(self) -> list[tuple[str, Markup]]:
        return [(name, getattr(self, name)) for name in PaperParts.__dataclass_fields__]


def _unquote(block: str) -> str:
    return "\n".join(re.sub(r"^>[ \t]?", "", line) for line in block.rstrip("\n").split("\n"))


def _inline(fragment: str) -> str:
    """The content of a lone paragraph, so a one-line value can sit inside a heading or a line."""
    inline = _PARAGRAPH.match(fragment)
    return inline[1] if inline and "<p>" not in inline[1] else fragment


def paper_parts(body: str) -> PaperParts:
    """A paper page's body (after Liquid) -> its parts."""
    found = _PAPER_BODY.match(body)
    if found is None:  # the page template shows the title: drop the body's own leading one
        return PaperParts(other=Markup(re.sub(r"\A\s*<h1[^>]*>.*?</h1>\s*", "", markdown_to_html(body), flags=re.S)))
    title, reason = (_inline(markdown_to_html(text)) for text in (_unquote(found["title"]), found["reason"]))
    rest = found["rest"].strip()
    return PaperParts(
        reason=Markup(reason),  # the pipeline writes it as escaped Markdown text
        title=Markup(title),
        abstract_zh=Markup(markdown_to_html(_unquote(found["zh"]))),
        abstract_en=Markup(markdown_to_html(_unquote(found["en"]))),
        other=Markup(markdown_to_html(rest) if rest and not _ARXIV_LINK.match(rest) else ""),
    )


def convert_paper(path: Path) -> PaperParts:
    body = read_body(path)
    if body is None:
        raise SiteError(f"{path}: front matter disappeared during the build")
    try:
        return paper_parts(apply_liquid_raw(body))
    except ValueError as exc:
        raise SiteError(f"{path}: {exc}") from None


def page_parts(page: Path) -> PaperParts | None:
    """The parts kept in an earlier build's paper page, or None when one is missing."""
    try:
        text = page.read_text(encoding="utf-8")
    except OSError:
        return None
    found = {name: Markup(value) for name, value in _PART.findall(text)}
    names = PaperParts.__dataclass_fields__
    return PaperParts(**{n: found[n] for n in names}) if all(n in found for n in names) else None


def _paper_doc(meta: PostMeta) -> list[str]:
    """A paper page's search document row: found by its Chinese title, class, tags, English title
    and arXiv id; the abstracts are already indexed with the daily post that shows the paper."""
    facts = [
        f"类别：{'、'.join(meta.classes)}" if meta.classes else "",
        f"标签：{'、'.join(meta.tags)}" if meta.tags else "",
    ]
    text = "　".join(f for f in [*facts, plain(meta.en_title)] if f)
    return ["", meta.title, "", meta.arxiv_id, text]


_ROOT_LINK = re.compile(r'(<a\s[^>]*?\bhref=")/(?!/)([^"]*)"')
_RELATIVE_LINK = re.compile(r'(<a\s[^>]*?\bhref=")(?![a-zA-Z][a-zA-Z0-9+.-]*:)([^"]*)"')


def relative_links(body_html: str, url: str) -> str:
    """Root-relative links in a post (the daily post links each paper to ``/papers/<id>/``) made
    relative to the page at ``url``, like every link the site writes: they then keep working when the
    site is served from a sub-path (``base_url``) or opened from a folder. A link to a folder gets its
    ``index.html``, as the site's own links do."""
    if 'href="/' not in body_html:
        return body_html
    root = "../" * url.count("/")

    def fix(match: re.Match[str]) -> str:
        target = match[2]
        cut = min((i for i in (target.find("?"), target.find("#")) if i >= 0), default=len(target))
        path = target[:cut]
        if not path or path.endswith("/"):
            path += "index.html"
        return f'{match[1]}{root}{path}{target[cut:]}"'

    return _ROOT_LINK.sub(fix, body_html)


# ---------------------------------------------------------------------------------------------------
# Search index


_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_OTHER_WORD = re.compile(f"[^\\W_{_CJK}]+")
_MARKS = re.compile("[\u0300-\u036f]")


def normalize(text: str) -> str:
    """NFKC, lower case, accents dropped; search.js applies the same steps to queries and documents."""
    return _MARKS.sub("", unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).lower()))


def search_tokens(text: str) -> set[str]:
    """CJK runs as bigrams (a lone character as itself), other words by their first three characters."""
    text = normalize(text)
    tokens = {word[:3] for word in _OTHER_WORD.findall(text)}
    for run in _CJK_RUN.findall(text):
        tokens.update(map(str.__add__, run[:-1], run[1:]) if len(run) > 1 else (run,))
    return tokens


def shard_of(token: str) -> int:
    """First and last code point mixed; search.js computes the same to pick the file to fetch."""
    return (ord(token[0]) * 31 + ord(token[-1])) % SEARCH_SHARDS


def _doc_tokens(doc: list[list[str]]) -> set[str]:
    return search_tokens(" ".join(" ".join(paper[1:]) for paper in doc))


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


class _SearchIndex:
    """The search index, in ``search/``: ``i/NN.json`` maps each token of shard NN to the base-36 ids
    of the posts holding it, ``posts.json`` lists the live ids with URL, date and title (newest first),
    ``d/ID.json`` holds a post's papers as [anchor, title, authors, arXiv id, Chinese text].

    Postings name posts (~20 papers each), not papers: far fewer, and search.js checks every paper of
    a candidate post for the query as a substring anyway, so the index only has to never miss. Ids
    only grow: a new or changed post is appended under a fresh id and its old id drops out of
    posts.json, so adding a post is one pass over the shards; they are rebuilt from the documents once
    dead ids pass a quarter of the live ones. Tokens are merged as posts arrive: holding every post's
    token set at once would cost hundreds of MB on a big site.
    """

    def __init__(self, site_dir: Path, live: int, next_id: int, rebuild: bool) -> None:
        self.site_dir = site_dir
        self.paths = [f"search/i/{n:02x}.json" for n in range(SEARCH_SHARDS)]
        missing = not all((site_dir / p).is_file() for p in self.paths)
        self.rebuild = rebuild or missing or next_id - live > live // 4
        self.postings: defaultdict[str, list[str]] = defaultdict(list)

    def add(self, postings: dict[str, str]) -> None:
        """Merge a batch's postings (token -> comma-joined ids)."""
        for token, ids in postings.items():
            self.postings[token].append(ids)

    def add_doc(self, search_id: int) -> None:
        """Re-index an unchanged post from its search document (when rebuilding)."""
        doc = json.loads((self.site_dir / _doc_path(search_id)).read_text(encoding="utf-8"))
        pid = _b36(search_id)
        self.add(dict.fromkeys(_doc_tokens(doc), pid))

    def shards(self) -> Iterator[tuple[str, str | None]]:
        """Each shard's path and new text, or None when it is unchanged."""
        grouped: list[list[str]] = [[] for _ in self.paths]
        for token in self.postings:
            grouped[shard_of(token)].append(token)
        for rel, tokens in zip(self.paths, grouped, strict=True):
            if not (self.rebuild or tokens):
                yield rel, None
                continue
            shard: dict[str, str] = {}
            if not self.rebuild:
                shard = json.loads((self.site_dir / rel).read_text(encoding="utf-8"))
            for token in tokens:
                joined = ",".join(self.postings[token])
                shard[token] = f"{shard[token]},{joined}" if token in shard else joined
            yield rel, json.dumps(shard, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------
# Templates and output


@dataclass(frozen=True)
class Pagination:
    """Links of a listing page. Beyond the first page, pages are fixed chunks counted from the oldest
    post: adding a post rewrites the first page and at most two others, and ``page/7.html`` keeps
    showing the same posts. So pages are labelled by their dates, not "page 3 of 9"."""

    label: str
    newer: str | None
    older: str | None


@dataclass(frozen=True)
class Category:
    name: str
    slug: str
    posts: int
    papers: int

    @property
    def url(self) -> str:
        return f"categories/{self.slug}/index.html"

    @property
    def feed_url(self) -> str:
        return f"categories/{self.slug}/feed.xml"


@dataclass(frozen=True)
class Topic:
    """A class of the paper taxonomy (``kind`` "classes") or a tag ("tags"), from the paper pages."""

    kind: str
    name: str
    slug: str
    papers: int

    @property
    def label(self) -> str:
        return "类别" if self.kind == "classes" else "标签"

    @property
    def url(self) -> str:
        return f"{self.kind}/{self.slug}/index.html"

    @property
    def feed_url(self) -> str:
        return f"{self.kind}/{self.slug}/feed.xml"


@dataclass(frozen=True)
class FeedEntry:
    title: str
    url: str
    id: str
    updated: str
    content: str
    categories: tuple[str, ...]


def category_slug(name: str) -> str:
    """A file-name-safe slug (letters of any script stay, so 语音处理 keeps its name); names that
    needed changing get a hash suffix, so slugs never collide."""
    slug = re.sub(r"[^\w.-]+", "-", name).strip(".-") or "c"
    return slug if slug == name else f"{slug}-{hashlib.blake2b(name.encode(), digest_size=3).hexdigest()}"


def _pages(
    items: Sequence[Any], per_page: int, path_of: Callable[[int], str], day_of: Callable[[Any], date]
) -> Iterator[tuple[str, Sequence[Any], Pagination]]:
    """Listing pages of newest-first ``items``: the newest ``per_page`` at ``path_of(0)``, then chunk
    k at ``path_of(k)``, chunk 1 being the oldest. The newest chunk is never a page of its own: all of
    it is on the first page."""
    count = len(items)
    chunks = -(-count // per_page) - 1

    def label(chunk: Sequence[Any]) -> str:
        if not chunk:
            return ""
        oldest, newest = day_of(chunk[-1]), day_of(chunk[0])
        return f"{oldest} — {newest}" if oldest != newest else str(newest)

    first = items[:per_page]
    yield path_of(0), first, Pagination(label(first), None, path_of(chunks) if chunks else None)
    for k in range(chunks, 0, -1):
        chunk = items[count - k * per_page : count - (k - 1) * per_page]
        newer = path_of(k + 1) if k < chunks else path_of(0)
        yield path_of(k), chunk, Pagination(label(chunk), newer, path_of(k - 1) if k > 1 else None)


def _digest(*parts: Any) -> str:
    return hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=12).hexdigest()


def _key(*parts: str) -> str:
    """``_digest`` of strings, cheaper: it runs for every post of every build."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def _file_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def template_dirs(user_dirs: Sequence[Path]) -> list[Path]:
    """``user_dirs`` that exist, then the packaged ``templates/site``."""
    try:
        return templating.search_path(user_dirs, "site")
    except FileNotFoundError as exc:
        raise SiteError(str(exc)) from None


def _tree(dirs: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    for base in dirs:
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.split("/")):
                yield path, rel


def _environment(dirs: Sequence[Path], site_globals: dict[str, Any]) -> jinja2.Environment:
    env = templating.environment(dirs[:-1], "site", autoescape=jinja2.select_autoescape(["html", "xml"]))
    env.globals.update(site_globals)
    env.filters["category_slug"] = category_slug
    return env


def _compile(env: jinja2.Environment, template: str) -> jinja2.Template:
    try:
        return env.get_template(template)
    except jinja2.TemplateSyntaxError as exc:
        raise SiteError(f"template {exc.filename or exc.name}:{exc.lineno}: {exc.message}") from None


def _render(env: jinja2.Environment, template: str, path: str, **context: Any) -> str:
    """Render with ``root``, the relative way back to the site root, so the site works from any folder."""
    template_object = _compile(env, template)
    try:
        return template_object.render(root="../" * path.count("/"), path=path, **context)
    except jinja2.TemplateError as exc:
        raise SiteError(f"template {template} (for {path}): {exc.message or exc}") from None


def _write(site_dir: Path, rel: str, data: str | bytes) -> None:
    """Atomic, so a server reading the folder never sees half a page; not fsynced: a build can be repeated."""
    write_atomic(os.path.join(site_dir, rel), data, durable=False)


# ---------------------------------------------------------------------------------------------------
# Work that runs in worker processes on big builds


@dataclass(frozen=True)
class _Worker:
    """What every job needs besides itself: where to write and how to render."""

    site_dir: Path
    dirs: tuple[Path, ...]
    site_globals: dict[str, Any]


@dataclass(frozen=True)
class _PostJob:
    meta: PostMeta
    path: Path
    convert: bool
    page_key: str | None
    newer: PostMeta | None
    older: PostMeta | None


@dataclass(frozen=True)
class _BatchResult:
    metas: list[PostMeta]
    postings: dict[str, str]  # token -> comma-joined search ids of this batch's new posts


_worker_state: tuple[_Worker, jinja2.Environment] | None = None


def _worker_init(worker: _Worker) -> None:
    global _worker_state
    _worker_state = (worker, _environment(worker.dirs, worker.site_globals))


def _batch_in_worker(jobs: list[_PostJob]) -> _BatchResult:
    if _worker_state is None:
        raise RuntimeError("worker process was not initialised")
    return _process_batch(jobs, *_worker_state)


def convert_post(path: Path) -> Content:
    """A post file -> its sanitised HTML, in sections."""
    body = read_body(path)
    if body is None:
        raise SiteError(f"{path}: front matter disappeared during the build")
    try:
        return split_sections(markdown_to_html(apply_liquid_raw(body)))
    except ValueError as exc:
        raise SiteError(f"{path}: {exc}") from None


def page_content(page: Path) -> Content | None:
    """The converted body kept in an earlier build's post page, between the markers that wrap
    ``content`` (sanitising strips comments from posts, so a post cannot fake them). Reading it back
    is ~20 times cheaper than converting again, and spares a cache as big as the site."""
    try:
        text = page.read_text(encoding="utf-8")
    except OSError:
        return None
    start = text.find(CONTENT_START)
    end = text.find(CONTENT_END, start)
    return split_sections(text[start + len(CONTENT_START) : end]) if start >= 0 and end >= 0 else None


def _process_paper(job: _PostJob, worker: _Worker, env: jinja2.Environment) -> tuple[PostMeta, set[str]]:
    """A paper page: as a post, but converted into parts and written with ``paper.html``."""
    meta, tokens = job.meta, set()
    parts = None if job.convert else page_parts(worker.site_dir / meta.url)
    if parts is None:
        parts = convert_paper(job.path)
    if job.convert:
        meta = replace(meta, papers=(Paper("", str(parts.title), (), meta.arxiv_id),))
        doc = [_paper_doc(meta)]
        _write(worker.site_dir, _doc_path(meta.search_id), json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
        tokens = _doc_tokens(doc)
    if job.page_key:
        context = {"page": meta, "parts": parts.marked(), "page_title": meta.title}
        _write(worker.site_dir, meta.url, _render(env, "paper.html", meta.url, **context))
    return meta, tokens


def _process_post(job: _PostJob, worker: _Worker, env: jinja2.Environment) -> tuple[PostMeta, set[str]]:
    """Convert a post (unless its page already holds the conversion) and write its page; a new or
    changed post also gets its papers and search document."""
    if job.meta.is_paper:
        return _process_paper(job, worker, env)
    meta, tokens = job.meta, set()
    content = None if job.convert else page_content(worker.site_dir / meta.url)
    if content is None:
        content = convert_post(job.path)
    if job.convert:
        found = [paper for paper in (_paper(a, section) for a, section in content.sections) if paper]
        papers, doc = [paper for paper, _ in found], [row for _, row in found]
        if not doc:
            doc = [["", meta.title, "", "", plain(content.html)]]
        meta = replace(meta, papers=tuple(papers))
        doc_text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        _write(worker.site_dir, _doc_path(meta.search_id), doc_text)
        tokens = _doc_tokens(doc)
    if job.page_key:
        body = Markup(CONTENT_START + relative_links(content.html, meta.url) + CONTENT_END)
        context = {"post": meta, "content": body, "newer": job.newer, "older": job.older}
        _write(worker.site_dir, meta.url, _render(env, "post.html", meta.url, page_title=meta.title, **context))
    return meta, tokens


def _process_batch(jobs: list[_PostJob], worker: _Worker, env: jinja2.Environment) -> _BatchResult:
    """Posts, and their postings merged here: one dict per batch is far cheaper to send back and to
    merge in the parent than a token set per post."""
    postings: defaultdict[str, list[str]] = defaultdict(list)
    metas = []
    for job in jobs:
        meta, tokens = _process_post(job, worker, env)
        metas.append(meta)
        pid = _b36(meta.search_id)
        for token in tokens:
            postings[token].append(pid)
    return _BatchResult(metas, {token: ",".join(ids) for token, ids in postings.items()})


def _run_batches(batches: list[list[_PostJob]], worker: _Worker, env: jinja2.Environment) -> Iterator[_BatchResult]:
    """Batches in order: in worker processes when there are enough posts to pay for starting them."""
    cpus = os.cpu_count() or 1
    if sum(map(len, batches)) < PARALLEL_MIN_POSTS or cpus < 2:
        for jobs in batches:
            yield _process_batch(jobs, worker, env)
        return
    # fork is cheapest but unsafe once other threads run (serve() builds beside its server threads)
    context = get_context("fork" if threading.active_count() == 1 else "forkserver")
    with ProcessPoolExecutor(min(cpus, 8), mp_context=context, initializer=_worker_init, initargs=(worker,)) as pool:
        yield from pool.map(_batch_in_worker, batches)


# ---------------------------------------------------------------------------------------------------
# The build


@dataclass
class _Manifest:
    """Inputs and outputs of the last build. ``complete`` is false while a build is writing, so a
    build that died half-way is followed by a full one; its outputs are still known for cleaning."""

    renderer: str = ""
    config: str = ""
    complete: bool = False
    posts: dict[str, PostMeta] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    next_search_id: int = 0
    # each post as loaded and its JSON, which is saved again as is while the post is that same object
    loaded: dict[str, tuple[PostMeta, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, site_dir: Path) -> _Manifest:
        try:
            data = json.loads((site_dir / MANIFEST).read_text(encoding="utf-8"))
            loaded = {k: (PostMeta.from_json(v), v) for k, v in data["posts"].items()}
            return cls(
                data["renderer"],
                data["config"],
                data["complete"],
                {k: meta for k, (meta, _) in loaded.items()},
                data["outputs"],
                data["next_search_id"],
                loaded,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def _post_json(self, source: str, meta: PostMeta) -> dict[str, Any]:
        known = self.loaded.get(source)
        return known[1] if known and known[0] is meta else meta.to_json()

    def save(self, site_dir: Path) -> None:
        data = {
            "renderer": self.renderer,
            "config": self.config,
            "complete": self.complete,
            "posts": {k: self._post_json(k, v) for k, v in self.posts.items()},
            "outputs": self.outputs,
            "next_search_id": self.next_search_id,
        }
        _write(site_dir, MANIFEST, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def _renderer_version() -> str:
    """Changes whenever this module or the converters change, which invalidates cached conversions."""
    source = Path(__file__).read_bytes()
    return _digest(_file_digest(source), version("pyromark"), version("nh3"))


def _sources(posts_dir: Path) -> list[tuple[str, str]]:
    """(posts_dir-relative name, path) of every ``.md``/``.markdown`` file, skipping names that start
    with ``.`` or ``_`` and folders named so. ``os.walk`` on strings: a site with a page per paper has
    tens of thousands of them, and pathlib's per-file objects cost more than the stat calls."""
    found = []
    root = str(posts_dir)
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        prefix = os.path.relpath(folder, root).replace(os.sep, "/") + "/"
        prefix = "" if prefix == "./" else prefix
        found += [
            (prefix + name, folder + os.sep + name)
            for name in files
            if name.endswith((".md", ".markdown")) and not name.startswith((".", "_"))
        ]
    return sorted(found)


def _scan(options: SiteOptions, previous: dict[str, PostMeta], site_dir: Path) -> list[tuple[PostMeta, str, bool]]:
    """Every post, its metadata and whether it must be converted. A file whose size and mtime match
    the manifest is not even read; one whose bytes match is not parsed."""
    if not options.posts_dir.is_dir():
        raise SiteError(f"posts folder {options.posts_dir} does not exist")
    found = []
    site = str(site_dir) + os.sep
    for source, path in _sources(options.posts_dir):
        info = os.stat(path)
        stamp = f"{info.st_size}:{info.st_mtime_ns}"
        old = previous.get(source)
        if old and not (os.path.isfile(site + old.url) and os.path.isfile(site + _doc_path(old.search_id))):
            old = None  # its page or search document is gone: convert again
        if old and old.stamp == stamp:
            found.append((old, path, False))
            continue
        file = Path(path)
        data = file.read_bytes()
        digest = _file_digest(data)
        if old and old.digest == digest:
            found.append((replace(old, stamp=stamp), path, False))
            continue
        front = _front_matter(_decode(data, file), file)
        if front is None:
            log.warning("%s: no front matter, not a post; skipped", path)
            continue
        found.append((_head(source, file, digest, stamp, front[0]), path, True))
    return found


def _doc_path(search_id: int) -> str:
    return f"search/d/{_b36(search_id)}.json"


class _Builder:
    """One build: decides what is stale from the manifest, writes it, and counts what it skipped."""

    def __init__(self, options: SiteOptions) -> None:
        self.options = options
        self.site_dir = options.site_dir
        self.site_prefix = str(self.site_dir) + os.sep
        self.per_page = max(1, options.per_page)
        self.dirs = template_dirs(options.templates_dirs)
        tree = [(rel, _file_digest(path.read_bytes()), path) for path, rel in _tree(reversed(self.dirs))]
        self.static = {rel: (d, path) for rel, d, path in tree if rel.startswith("static/")}
        self.renderer = _renderer_version()
        self.config = _digest(
            self.renderer,
            options.title,
            options.base_url,
            options.per_page,
            options.papers_per_page,
            [(r, d) for r, d, _ in tree],
        )
        asset_version = _digest(sorted((r, d) for r, (d, _) in self.static.items()))[:10]
        site = {"title": options.title, "base_url": options.base_url}
        site_globals = {"site": site, "asset_version": asset_version, "paper_pages": False}
        self.worker = _Worker(self.site_dir, tuple(self.dirs), site_globals)
        self.env = _environment(self.dirs, self.worker.site_globals)
        for name in TEMPLATES:  # a syntax error stops the build before it has touched anything
            _compile(self.env, name)
        self.old = _Manifest.load(self.site_dir)
        self.full = not (options.incremental and self.old.complete and self.old.renderer == self.renderer)
        self.outputs: dict[str, str] = {}
        self.written: list[str] = []
        self.skipped = 0
        self._contents: dict[str, Content] = {}
        self._parts: dict[str, PaperParts] = {}
        self._entries: dict[str, str] = {}
        self.categories: dict[str, Category] = {}
        self.by_category: dict[str, list[tuple[PostMeta, tuple[Paper, ...]]]] = {}
        self.topics: list[tuple[Topic, list[PostMeta]]] = []

    # -- bookkeeping ------------------------------------------------------------------------------

    def stale(self, rel: str, key: str) -> bool:
        """Record ``rel`` as an output; True when it must be (re)written."""
        if rel in self.outputs:
            raise SiteError(f"two pages would be written to {rel}")
        self.outputs[rel] = key
        if not self.full and self.old.outputs.get(rel) == key and os.path.isfile(self.site_prefix + rel):
            self.skipped += 1
            return False
        self.written.append(rel)
        return True

    def page(self, rel: str, key_parts: Iterable[Any], template: str, **context: Any) -> None:
        """Render a page unless the manifest shows it is up to date. In this process: shipping a
        listing's posts to a worker costs more than rendering it (measured: 2.3x)."""
        if self.stale(rel, _digest(self.config, template, *key_parts)):
            _write(self.site_dir, rel, _render(self.env, template, rel, **context))

    def content(self, post: PostMeta) -> Content:
        if post.digest not in self._contents:
            found = page_content(self.site_dir / post.url)
            self._contents[post.digest] = found or convert_post(self.options.posts_dir / post.source)
        return self._contents[post.digest]

    def parts(self, page: PostMeta) -> PaperParts:
        if page.digest not in self._parts:
            found = page_parts(self.site_dir / page.url)
            self._parts[page.digest] = found or convert_paper(self.options.posts_dir / page.source)
        return self._parts[page.digest]

    def absolute_links(self, body_html: str, rel: str) -> str:
        """Links of a page's content, for a feed: resolved against the page's public URL."""
        page_url = self.absolute(rel)
        return _RELATIVE_LINK.sub(
            lambda m: f'{m[1]}{html.escape(urljoin(page_url, html.unescape(m[2])))}"',
            relative_links(body_html, rel),
        )

    def absolute(self, rel: str) -> str:
        return f"{self.options.base_url.rstrip('/')}/{rel}"

    def atom_id(self, rel: str) -> str:
        """The public URL when there is one; otherwise a stable URN, as Atom ids must be absolute."""
        if self.options.base_url:
            return self.absolute(rel)
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'arxiv-digest:' + rel)}"

    # -- stages -----------------------------------------------------------------------------------

    def run(self) -> BuildReport:
        started = time.perf_counter()
        scanned = _scan(self.options, {} if self.full else self.old.posts, self.site_dir)
        next_id = 0 if self.full else self.old.next_search_id
        for index, (meta, path, convert) in sorted(enumerate(scanned), key=lambda item: item[1][0].date):
            if convert:  # a new or changed post gets a fresh search id, oldest first
                scanned[index] = (replace(meta, search_id=next_id), path, convert)
                next_id += 1
        scanned.sort(key=lambda item: (item[0].date, item[0].source), reverse=True)
        self._paper_pages(any(meta.is_paper for meta, _, _ in scanned))
        self._mark_incomplete()
        search = _SearchIndex(self.site_dir, live=len(scanned), next_id=next_id, rebuild=self.full)

        daily = [meta for meta, _, _ in scanned if not meta.is_paper]
        neighbours = {
            meta.source: (daily[i - 1] if i else None, daily[i + 1] if i + 1 < len(daily) else None)
            for i, meta in enumerate(daily)
        }
        jobs: list[_PostJob] = []
        posts: dict[str, PostMeta] = {}
        urls: dict[str, str] = {}
        for meta, path, convert in scanned:
            newer, older = neighbours.get(meta.source, (None, None))
            if meta.is_paper:
                key = _key(self.config, "paper.html", meta.url, meta.digest)
            else:
                key = _key(
                    self.config, "post.html", meta.url, meta.digest, *(_ref(newer) or ["-"]), *(_ref(older) or ["-"])
                )
            posts[meta.source] = meta
            if meta.url in urls:
                raise SiteError(f"{meta.source} and {urls[meta.url]} would both be written to {meta.url}")
            urls[meta.url] = meta.source
            self.stale(_doc_path(meta.search_id), meta.digest)
            if not convert and search.rebuild:
                search.add_doc(meta.search_id)
            page_stale = self.stale(meta.url, key)
            if page_stale or convert:
                job = _PostJob(meta, Path(path), convert, key if page_stale else None, _bare(newer), _bare(older))
                jobs.append(job)

        batches = [jobs[i : i + POSTS_PER_TASK] for i in range(0, len(jobs), POSTS_PER_TASK)]
        for result in _run_batches(batches, self.worker, self.env):
            posts.update((meta.source, meta) for meta in result.metas)
            search.add(result.postings)
        ordered = [posts[meta.source] for meta, _, _ in scanned]
        daily = [p for p in ordered if not p.is_paper]
        pages = [p for p in ordered if p.is_paper]
        self._listings(daily)
        self._topics(pages)
        self._feeds(daily)
        self._topic_feeds()
        self._search(ordered, search)
        self._static()
        removed = self._clean()
        _Manifest(self.renderer, self.config, True, posts, self.outputs, next_id, self.old.loaded).save(self.site_dir)
        seconds = time.perf_counter() - started
        written = tuple(self.written)
        return BuildReport(len(daily), written, self.skipped, removed, seconds, self.full, len(pages))

    def _paper_pages(self, present: bool) -> None:
        """Whether the site has paper pages: the navigation links their overview only then, so every
        page depends on it."""
        self.config = _digest(self.config, present)
        self.env.globals["paper_pages"] = present
        self.worker.site_globals["paper_pages"] = present

    def _mark_incomplete(self) -> None:
        """From here on files change: a crash must not leave a manifest that vouches for them."""
        self.site_dir.mkdir(parents=True, exist_ok=True)
        _Manifest(outputs=self.old.outputs).save(self.site_dir)

    def _listings(self, posts: list[PostMeta]) -> None:
        self._paginate(posts, _index_path, "index.html", lambda p: p.date, [], page_title=None)

        by_category: dict[str, list[tuple[PostMeta, tuple[Paper, ...]]]] = {}
        for post in posts:
            for name in post.categories:
                matching = tuple(p for p in post.papers if name in p.categories)
                by_category.setdefault(name, []).append((post, matching))
        categories = sorted(
            (Category(n, category_slug(n), len(e), sum(len(p) for _, p in e)) for n, e in by_category.items()),
            key=lambda c: (-c.papers, c.name),
        )
        summary = [[c.name, c.posts, c.papers] for c in categories]
        self.page("categories/index.html", summary, "categories.html", categories=categories, page_title="分类")
        for category in categories:
            self._paginate(
                by_category[category.name],
                partial(_category_path, category.slug),
                "category.html",
                lambda entry: entry[0].date,
                [category.posts, category.papers],
                category=category,
                page_title=category.name,
            )
        self.categories = {c.name: c for c in categories}
        self.by_category = by_category

        months: dict[str, list[PostMeta]] = {}
        for post in posts:
            months.setdefault(post.month, []).append(post)
        every = [_ref(p) for p in posts]
        self.page(
            "archive/index.html", every, "archive.html", months=list(months.items()), month=None, page_title="归档"
        )
        for month, month_posts in months.items():
            self.page(
                f"archive/{month}.html",
                [_ref(p) for p in month_posts],
                "archive.html",
                months=[(month, month_posts)],
                month=month,
                page_title=f"{month} 归档",
            )
        self.page("search.html", [], "search.html", page_title="搜索")

    def _topics(self, pages: list[PostMeta]) -> None:
        """A page per class and per tag listing its paper pages (newest first, paginated like the
        index), and an overview of both at ``classes/`` and ``tags/``. A listing shows only what the
        paper page's source holds, so it changes only when one of its pages does."""
        topics: list[tuple[Topic, list[PostMeta]]] = []
        for kind, names_of in (("classes", lambda p: p.classes), ("tags", lambda p: p.tags)):
            members: dict[str, list[PostMeta]] = {}
            for page in pages:
                for name in names_of(page):
                    members.setdefault(name, []).append(page)
            found = sorted(
                (Topic(kind, n, category_slug(n), len(m)) for n, m in members.items()),
                key=lambda t: (-t.papers, t.name),
            )
            topics += [(topic, members[topic.name]) for topic in found]
        self.topics = topics
        if not pages:
            return
        classes = [t for t, _ in topics if t.kind == "classes"]
        tags = [t for t, _ in topics if t.kind == "tags"]
        summary = [[t.kind, t.name, t.papers] for t, _ in topics]
        for kind in ("classes", "tags"):  # the same overview at both, so neither folder is a dead end
            self.page(f"{kind}/index.html", summary, "topics.html", classes=classes, tags=tags, page_title="类别与标签")
        for topic, papers in topics:
            self._paginate(
                papers,
                partial(_topic_path, topic.kind, topic.slug),
                "topic.html",
                lambda page: page.date,
                [topic.papers],
                per_page=self.options.papers_per_page,
                topic=topic,
                page_title=f"{topic.label}：{topic.name}",
            )

    def _paginate(
        self,
        items: Sequence[Any],
        path_of: Callable[[int], str],
        template: str,
        day_of: Callable[[Any], date],
        first_key: list[Any],
        per_page: int | None = None,
        **extra: Any,
    ) -> None:
        """Listing pages; ``first_key`` is what only the first page shows (a category's totals), so
        that older pages stay untouched when it changes."""
        for rel, chunk, pagination in _pages(items, max(1, per_page or self.per_page), path_of, day_of):
            refs = [
                _ref(item) if isinstance(item, PostMeta) else [_ref(item[0]), [p.anchor for p in item[1]]]
                for item in chunk
            ]
            key = [refs, pagination, first_key if pagination.newer is None else None]
            self.page(rel, key, template, items=chunk, pagination=pagination, **extra)

    def _feeds(self, posts: list[PostMeta]) -> None:
        """Atom with full content: the latest posts site-wide, the latest papers per category."""
        latest = posts[:FEED_POSTS]
        if self.stale("feed.xml", _digest(self.config, "feed", [_ref(p) for p in latest])):
            entries = [
                FeedEntry(
                    p.title,
                    self.absolute(p.url),
                    self.atom_id(p.url),
                    _stamp(p.date),
                    self.absolute_links(self.content(p).html, p.url),
                    p.categories,
                )
                for p in latest
            ]
            self._write_feed("feed.xml", self.options.title, "index.html", entries)
        for name, category in self.categories.items():
            papers = [(post, paper) for post, matching in self.by_category[name] for paper in matching]
            papers = papers[:CATEGORY_FEED_PAPERS]
            key = _digest(self.config, "feed", name, [[_ref(post), paper.anchor] for post, paper in papers])
            if not self.stale(category.feed_url, key):
                continue
            entries = []
            for post, paper in papers:
                section = dict(self.content(post).sections)[paper.anchor]
                body = re.sub(r"\A<h2[^>]*>.*?</h2>|<hr>\s*\Z", "", section.strip(), flags=re.S)
                link = f"{post.url}#{paper.anchor}"
                entries.append(
                    FeedEntry(
                        plain(paper.title),
                        self.absolute(link),
                        self.atom_id(link),
                        _stamp(post.date),
                        self.absolute_links(body, post.url),
                        paper.categories,
                    )
                )
            self._write_feed(category.feed_url, f"{self.options.title} · {name}", category.url, entries)

    def _topic_feeds(self) -> None:
        """Atom with full content per class and per tag: its latest paper pages."""
        for topic, members in self.topics:
            latest = members[:CATEGORY_FEED_PAPERS]
            if not self.stale(
                topic.feed_url, _digest(self.config, "feed", topic.kind, topic.name, [_ref(p) for p in latest])
            ):
                continue
            entries = [
                FeedEntry(
                    page.title,
                    self.absolute(page.url),
                    self.atom_id(page.url),
                    _stamp(page.date),
                    self.paper_entry(page),
                    (*page.classes, *page.tags),
                )
                for page in latest
            ]
            title = f"{self.options.title} · {topic.label}：{topic.name}"
            self._write_feed(topic.feed_url, title, topic.url, entries)

    def paper_entry(self, page: PostMeta) -> str:
        """A paper page's feed content: ``paper_details`` of ``_macros.html``, as on the page, with
        absolute links."""
        if page.digest not in self._entries:
            details = _compile(self.env, "_macros.html").module.paper_details  # type: ignore[attr-defined]
            body = str(details(page, self.parts(page), self.absolute("")))
            self._entries[page.digest] = self.absolute_links(body, page.url)
        return self._entries[page.digest]

    def _write_feed(self, rel: str, title: str, page: str, entries: list[FeedEntry]) -> None:
        feed = {
            "title": title,
            "id": self.atom_id(rel),
            "self_url": self.absolute(rel),
            "html_url": self.absolute(page),
            "updated": entries[0].updated if entries else _stamp(date(1970, 1, 1)),
        }
        _write(self.site_dir, rel, _render(self.env, "feed.xml", rel, feed=feed, entries=entries))

    def _search(self, posts: list[PostMeta], search: _SearchIndex) -> None:
        listed = [[_b36(p.search_id), p.url, p.date.isoformat(), p.title] for p in posts]
        text = json.dumps({"shards": SEARCH_SHARDS, "posts": listed}, ensure_ascii=False, separators=(",", ":"))
        if self.stale("search/posts.json", _file_digest(text.encode())):
            _write(self.site_dir, "search/posts.json", text)
        for rel, shard in search.shards():
            if shard is None:
                self.stale(rel, self.old.outputs.get(rel, ""))
            elif self.stale(rel, _file_digest(shard.encode())):
                _write(self.site_dir, rel, shard)

    def _static(self) -> None:
        for rel, (digest, path) in self.static.items():
            if self.stale(rel, digest):
                _write(self.site_dir, rel, path.read_bytes())

    def _clean(self) -> tuple[str, ...]:
        """Delete what earlier builds wrote and this one did not."""
        removed = sorted(set(self.old.outputs) - set(self.outputs))
        for rel in removed:
            target = self.site_dir / rel
            target.unlink(missing_ok=True)
            for parent in target.parents:
                if parent == self.site_dir or any(parent.iterdir()):
                    break
                parent.rmdir()
        return tuple(removed)


def _ref(post: PostMeta | None) -> list[str] | None:
    """What a page shows of another post changes only with its source and content."""
    return [post.source, post.digest] if post else None


def _bare(post: PostMeta | None) -> PostMeta | None:
    return replace(post, papers=()) if post else None


def _stamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _index_path(number: int) -> str:
    return "index.html" if number == 0 else f"page/{number}.html"


def _category_path(slug: str, number: int) -> str:
    return f"categories/{slug}/index.html" if number == 0 else f"categories/{slug}/{number}.html"


def _topic_path(kind: str, slug: str, number: int) -> str:
    return f"{kind}/{slug}/index.html" if number == 0 else f"{kind}/{slug}/{number}.html"


def build_site(options: SiteOptions) -> BuildReport:
    """Build (or bring up to date) the site in ``options.site_dir`` from the posts in ``posts_dir``."""
    report = _Builder(options).run()
    log.info("%s", report.summary())
    return report
