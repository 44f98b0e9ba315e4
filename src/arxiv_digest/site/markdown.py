"""Markdown -> sanitised HTML as kramdown would render the posts, and the links inside it.

Markdown goes through pulldown-cmark (Rust, ``pyromark``), not Python-Markdown: ``md_in_html``
leaves the posts' ``<div markdown="1">`` unconverted when it sits in a raw ``<details>``, and its
lists cannot interrupt a paragraph, so it renders the posts unlike kramdown does. CommonMark HTML
blocks end at a blank line, which gives kramdown's result for this format. (cmark-gfm, via
``cmarkgfm``, renders the same but leaks each parsed tree, ~0.75 MB a post, and is 3x slower.) Two
kramdown rules are applied on top: ``1)`` is not a list marker, and ``~`` is not strikethrough
(Chinese text writes ranges as ``2~6``). Headings get kramdown's ids, so anchors match a Jekyll
build; the converter reports the headings it wrote, with their ids.

The HTML is then sanitised with ammonia (``nh3``) against an allow-list: the pipeline's escaping is
one layer, and a post must not be able to run anything even when that layer has a bug.

LaTeX (``$…$``, ``$$…$$``) is kept away from Markdown, so ``_`` and ``*`` stay TeX, and rendered as
MathML at build time (``arxiv_digest.mathml``) in ``<span class="math">``: no script (the CSP stays
``script-src 'self'``), the same in pages and feeds; TeX the converter cannot render faithfully
(arXiv's ad-hoc macros, stray dollars) stays as its readable source. KaTeX would add ~1 MB of
vendored files and client-side work to every HTML file for the few titles that carry maths.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import AnyStr
from urllib.parse import urljoin

import nh3
import pyromark

from ..mathml import MATHML_ATTRIBUTES, MATHML_TAGS, math_html
from ..postformat import LABEL
from ..postformat.reader import event_text

_PARSER = pyromark.Markdown(options=pyromark.Options.ENABLE_TABLES)
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\1[`~]*[ \t]*$|\Z)", re.S | re.M)
# Both patterns start with a literal (each branch's ` or $; a newline), which the regex engine scans
# for in a tight loop instead of trying the pattern at every position; an inline $'s lookbehind is
# checked after it. With the lookahead that rejects most lines at once, ``_protect`` takes a post in
# 0.39 ms instead of 0.83.
_SPAN = re.compile(
    r"`(?P<code>(?P<ticks>`*)(?:(?!\n[ \t]*\n).)+?(?<!`)`(?P=ticks)(?!`))"
    r"|\$\$(?P<display>(?:(?!\n[ \t]*\n)[^$])+?)\$\$"
    r"|\$(?<![\\$]\$)(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?![\d$])",
    re.S,
)
# ``1)`` at the start of a line (after a newline: one is put before the text), after list or quote markers
_PAREN_ITEM = re.compile(r"\n(?=[-+*> \t]*\d)((?:[ \t]*(?:[-+*]|>)[ \t]+)*[ \t]*\d{1,9})\)(?=[ \t]|$)", re.M)
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")


def _maths(match: re.Match[str]) -> str:
    """A maths span as HTML: MathML, or its TeX source shown as text."""
    display = bool(match["display"])
    return math_html(html.unescape(match["display"] if display else match["inline"]), display)


def _protect(text: str) -> tuple[str, list[re.Match[str]]]:
    """Swap maths for placeholders (outside code; pulldown-cmark's own maths option is laxer and turns
    ``$5 and $10`` into maths) and escape ``1)``, so the parser reads the post as kramdown does."""
    maths: list[re.Match[str]] = []

    def swap(match: re.Match[str]) -> str:
        if match["code"] is not None:
            return match[0]
        maths.append(match)
        return f"\ue000{len(maths) - 1}\ue001"

    def outside_fences(part: str) -> str:
        part = _SPAN.sub(swap, part) if "$" in part else part
        return _PAREN_ITEM.sub(r"\n\1\\)", "\n" + part)[1:] if ")" in part else part

    out, pos = [], 0
    for fence in _FENCE.finditer(text) if "```" in text or "~~~" in text else ():
        out += [outside_fences(text[pos : fence.start()]), fence[0]]
        pos = fence.end()
    out.append(outside_fences(text[pos:]))
    return "".join(out), maths


def _restore(text: str, maths: list[re.Match[str]], show: Callable[[re.Match[str]], str]) -> str:
    """Placeholders back as ``show`` gives each maths span (a placeholder in the post itself is dropped)."""
    return _PLACEHOLDER.sub(lambda m: show(maths[int(m[1])]) if int(m[1]) < len(maths) else "", text)


_CLEANER = nh3.Cleaner(
    tags={
        *("details", "summary", "div", "p", "ul", "ol", "li", "a", "strong", "em", "code", "pre"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "br", "span", "del"),
        *("table", "thead", "tbody", "tr", "th", "td"),
        *MATHML_TAGS,
    },
    attributes={
        **{tag: set(names) for tag, names in MATHML_ATTRIBUTES.items()},
        **{"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}, "details": {"open"}},
    },
    allowed_classes={"span": {"math", "display"}},
    url_schemes={"http", "https"},
)
_HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>", re.S)
_TAG = re.compile(r"<[^>]*>")
_MATHML = re.compile(
    r'<math [^>]*display="(\w+)".*?<annotation encoding="application/x-tex">(.*?)</annotation>.*?</math>', re.S
)


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    id: str
    html: str  # its content: sanitised inline HTML

    @property
    def text(self) -> str:
        return plain(self.html)


@dataclass(frozen=True, slots=True)
class Converted:
    """Sanitised HTML, and the headings in it with the ids they were given."""

    html: str
    headings: tuple[Heading, ...] = ()


def plain(fragment: str) -> str:
    """The text of a fragment of sanitised HTML this module wrote; maths as its TeX source, as the
    post writes it (headings get their ids, and papers are matched to headings, by this text)."""
    if "<math" in fragment:
        fragment = _MATHML.sub(
            lambda m: f"{'$$' if m[1] == 'block' else '$'}{m[2]}{'$$' if m[1] == 'block' else '$'}", fragment
        )
    return html.unescape(_TAG.sub("", fragment)).strip()


def _kramdown_id(text: str) -> str:
    """kramdown's ``auto_ids``, so anchors match a Jekyll build of the same posts."""
    slug = re.sub(r"[^a-zA-Z0-9 -]", "", re.sub(r"^[^a-zA-Z]+", "", text)).replace(" ", "-").lower()
    return slug or "section"


def convert(markdown: str) -> Converted:
    """Markdown after Liquid -> sanitised HTML whose headings carry kramdown's ids."""
    text, maths = _protect(markdown)
    raw = _PARSER.html(text)
    if maths:
        raw = _restore(raw, maths, _maths)
    used: dict[str, int] = {}
    headings: list[Heading] = []

    def add_id(match: re.Match[str]) -> str:
        anchor = _kramdown_id(plain(match[2]))
        seen = used.get(anchor, 0)
        used[anchor] = seen + 1
        anchor = f"{anchor}-{seen}" if seen else anchor
        headings.append(Heading(int(match[1]), anchor, match[2]))
        return f'<h{match[1]} id="{anchor}">{match[2]}</h{match[1]}>'

    body = _HEADING.sub(add_id, _CLEANER.clean(raw))
    return Converted(_fold_authors(body), tuple(headings))


_PARAGRAPH = re.compile(r"\A\s*<p>(.*)</p>\s*\Z", re.S)


def convert_inline(markdown: str) -> str:
    """One line of Markdown as inline HTML, to sit inside a heading or a line of text."""
    converted = convert(markdown).html
    inline = _PARAGRAPH.match(converted)
    return inline[1] if inline and "<p>" not in inline[1] else converted


def text_html(text: str) -> str:
    """Plain text (a paper's title) as HTML, its maths shown as on the post."""
    out, pos = [], 0
    for match in _SPAN.finditer(text):
        if match["code"] is None:
            out += [html.escape(text[pos : match.start()], quote=False), _maths(match)]
            pos = match.end()
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out)


def markdown_text(markdown: str) -> str:
    """The plain text of Markdown (for search): its words and maths, without markup."""
    text, maths = _protect(markdown)
    words = " ".join(event_text(_PARSER.events(text)).split())
    return _restore(words, maths, lambda m: html.unescape(m[0]))


AUTHORS_SHOWN, AUTHORS_FOLDED = 10, 20
_AUTHORS = re.compile(rf"<li><strong>{re.escape(LABEL.authors)}</strong>: ([^<]*)</li>")


def _fold_authors(body_html: str) -> str:
    """An author list longer than 20 names (arXiv has papers with hundreds) would fill a phone's
    screen: show ten and fold the rest into a ``<details>`` that says how many there are."""

    def fold(match: re.Match[str]) -> str:
        names = match[1].split(", ")
        if len(names) <= AUTHORS_FOLDED:
            return match[0]
        shown, rest = ", ".join(names[:AUTHORS_SHOWN]), ", ".join(names[AUTHORS_SHOWN:])
        return (
            f'<li><strong>{LABEL.authors}</strong>: {shown}, <details class="more-authors">'
            f"<summary>等 {len(names)} 位作者</summary>{rest}</details></li>"
        )

    return _AUTHORS.sub(fold, body_html)


_ROOT_LINK = re.compile(r'(<a\s[^>]*?\bhref=")/(?!/)([^"]*)"')
_ROOT_LINK_UTF8 = re.compile(_ROOT_LINK.pattern.encode())
_RELATIVE_LINK = re.compile(r'(<a\s[^>]*?\bhref=")(?![a-zA-Z][a-zA-Z0-9+.-]*:)([^"]*)"')


def relative_links(body_html: AnyStr, url: str) -> AnyStr:
    """Root-relative links in a post (the daily post links each paper to ``/papers/<id>/``) made
    relative to the HTML file at ``url``, like every link the site writes: they then keep working when the
    site is served from a sub-path (``base_url``) or opened from a folder. A link to a folder gets its
    ``index.html``, as the site's own links do. ``body_html`` as text, or as UTF-8."""
    root = "../" * url.count("/")

    def fix(opening: str, target: str) -> str:
        cut = min((i for i in (target.find("?"), target.find("#")) if i >= 0), default=len(target))
        path = target[:cut]
        if not path or path.endswith("/"):
            path += "index.html"
        return f'{opening}{root}{path}{target[cut:]}"'

    if isinstance(body_html, bytes):
        if b'href="/' not in body_html:
            return body_html
        return _ROOT_LINK_UTF8.sub(lambda m: fix(m[1].decode(), m[2].decode()).encode(), body_html)
    if 'href="/' not in body_html:
        return body_html
    return _ROOT_LINK.sub(lambda m: fix(m[1], m[2]), body_html)


def absolute_links(body_html: str, url: str, public_url: str) -> str:
    """The links of HTML shown at site-relative ``url`` resolved against its ``public_url``, for a feed."""
    return _RELATIVE_LINK.sub(
        lambda m: f'{m[1]}{html.escape(urljoin(public_url, html.unescape(m[2])))}"',
        relative_links(body_html, url),
    )
