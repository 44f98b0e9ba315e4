"""The daily post and the per-paper page as data: the one owner of their structure.

The pipeline renders a post with ``templates/post.md.j2`` and writes beside it its *record*, a
small JSON sidecar (``posts/.<name>.json``; Jekyll and the site's source scan skip dot-files) that
says what the post holds: each paper's id, title, authors, categories, links and texts. Whatever
needs a post's structure (the rewrite guard, the site's category pages, counts, search and feeds)
reads the record, never the rendered text or HTML, so a user's own ``post.md.j2`` (other labels,
another order, extra lines) changes nothing for them. The sidecar carries the sha256 of the text it
describes and is written first: a crash before the post is written leaves a sidecar that does not
match, which is ignored.

A post without a matching sidecar (written by the seed system, by hand, or edited since) is read by
its Markdown: the front matter, then a CommonMark event stream in the reference format (``##``
headings start papers, the metadata list is read by its keys, the paragraphs after it are the
translation, or the English abstract and the pending line, and ``<details>`` holds the explainer).
The format's labels are defined here and handed to the packaged templates as the global ``LABEL``,
so the template and this reader cannot drift apart.

Text fields hold Markdown as kramdown reads it from the post (the template's escaping applied,
Jekyll's Liquid pass done), so whatever shows a field shows what the post shows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
import pyromark
import yaml

from .errors import DigestError
from .files import write_atomic
from .models import PaperPage, Post

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1
PENDING_LINE = "（中文译文待生成，暂显示英文摘要。）"


@dataclass(frozen=True)
class Labels:
    """The fixed words of the reference formats, as the packaged templates write them."""

    authors: str = "Authors"
    categories: str = "Categories"
    arxiv: str = "arXiv"
    pdf: str = "PDF"
    page: str = "中文页面"
    explainer: str = "详细解读"
    pending: str = PENDING_LINE
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


class PostFormatError(DigestError):
    """A post or page that cannot be read (not UTF-8, broken front matter, unclosed Liquid raw tag);
    the message names the file."""


# ---------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class PaperRecord:
    """One paper of a daily post. ``title`` and ``authors`` are plain text; the texts are Markdown.
    ``translation`` is None while it is pending (the post then shows ``abstract``, the English one);
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
            title=" ".join(entry.paper.title.split()),
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
    """The record of a per-paper page, its texts as ``paper.md.j2`` writes them (the reason sits
    between the template's backticks, so it goes through ``code`` first)."""
    inline, block = _markdown(env, "md"), _markdown(env, "md_block")
    return PageRecord(
        arxiv_id=page.paper.arxiv_id,
        date=page.day,
        title=page.info.title,
        category=page.info.category,
        reason=inline(env.filters["code"](page.info.reason)),
        tags=page.info.tags,
        en_title=" ".join(page.paper.title.split()),
        abstract_zh=block(page.translation),
        abstract_en=inline(page.paper.summary),
        permalink=page.permalink,
    )


def _markdown(env: jinja2.Environment, name: str) -> Callable[[str], str]:
    escape = env.filters[name]
    return lambda text: apply_liquid_raw(escape(text))


# ---------------------------------------------------------------------------------------------------
# Sidecars


def sidecar_path(path: Path) -> Path:
    """Where the record of the post or page at ``path`` lives: a dot-file beside it."""
    return path.with_name(f".{path.name}.json")


def write(path: Path, text: str, record: Record) -> None:
    """Write a post or page and its record, the record first; each only when it differs from what is
    on disk (a post from before records existed gets its record on the next run)."""
    side = sidecar_path(path)
    data = json.dumps(_sidecar(text, record), ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if _read_text(side) != data:
        write_atomic(side, data)
    if _read_text(path) != text:
        write_atomic(path, text)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _sidecar(text: str, record: Record) -> dict[str, Any]:
    kind = "post" if isinstance(record, PostRecord) else "page"
    body = asdict(record)
    body["date"] = record.date.isoformat() if record.date else None
    return {"format": SIDECAR_FORMAT, "kind": kind, "sha256": _sha256(text.encode()), kind: body}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _from_sidecar(data: bytes, raw: bytes, kind: Literal["post", "page"]) -> Record | None:
    """The record in sidecar bytes ``data`` when it describes exactly ``raw`` (the file's bytes),
    else None: the file is then read by its Markdown."""
    try:
        found = json.loads(data)
        if found.get("format") != SIDECAR_FORMAT or found.get("kind") != kind or found.get("sha256") != _sha256(raw):
            return None
        body = dict(found[kind])
        body["date"] = date.fromisoformat(body["date"]) if body.get("date") else None
        if kind == "page":
            return PageRecord(**_tuples(PageRecord, body))
        body["papers"] = tuple(PaperRecord(**_tuples(PaperRecord, paper)) for paper in body["papers"])
        return PostRecord(**_tuples(PostRecord, body))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.debug("sidecar of a %s unusable (%s); reading its Markdown", kind, exc)
        return None


def _tuples(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back into the tuples the frozen records hold."""
    known = {f.name for f in fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}


# ---------------------------------------------------------------------------------------------------
# Files: front matter, Liquid, record


@dataclass(frozen=True)
class Document:
    """A post or page as Jekyll would read it: its front matter and its body after Liquid, with its
    record (from the sidecar when it matches, else from the Markdown)."""

    front: dict[str, Any]
    body: str
    record: Record


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S | re.M)
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # no YAML or XML reader takes these
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def decode(data: bytes, path: Path | str) -> str:
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise PostFormatError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def front_matter(text: str, path: Path | str) -> tuple[dict[str, Any], int] | None:
    """The YAML front matter and where the body starts, or None without front matter (Jekyll copies
    such files instead of rendering them)."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None
    try:
        front = yaml.load(XML_INVALID.sub("", match[1]), Loader=_LOADER) or {}
    except yaml.YAMLError as exc:
        raise PostFormatError(f"{path}: front matter is not valid YAML: {exc}") from None
    if not isinstance(front, dict):
        raise PostFormatError(f"{path}: front matter must be a mapping, not {type(front).__name__}")
    return front, match.end()


def _front(text: str) -> dict[str, Any]:
    """Front matter of a post being written; a template that writes none (or broken YAML, which
    Jekyll will report) gives a record without title and tags rather than no post."""
    try:
        found = front_matter(text, "the rendered post")
    except PostFormatError as exc:
        log.warning("%s", exc)
        return {}
    return found[0] if found else {}


def page_id(front: Mapping[str, Any], stem: str) -> str:
    """The arXiv id a per-paper page names in its front matter; "" for anything else. Unquoted YAML
    reads ``2601.10010`` as a number and drops its last 0: the file name (``<date>-<id>``) has it whole."""
    value = front.get("arxiv_id")
    if value is None or not str(value).strip():
        return ""
    slug = stem.split("-", 3)[-1]
    return slug if not isinstance(value, str) and slug.startswith(str(value)) else str(value).strip()


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


def read(path: Path, raw: bytes | None = None, sidecar: bytes | None = None) -> Document | None:
    """The post or page at ``path`` (its bytes ``raw`` and its sidecar's ``sidecar`` when the caller
    has read them already), or None when it has no front matter and so is no post."""
    raw = path.read_bytes() if raw is None else raw
    text = decode(raw, path)
    found = front_matter(text, path)
    if found is None:
        return None
    front, start = found
    if sidecar is None:
        try:
            sidecar = sidecar_path(path).read_bytes()
        except OSError:
            sidecar = b""
    kind: Literal["post", "page"] = "page" if page_id(front, path.stem) else "post"
    try:
        body = apply_liquid_raw(XML_INVALID.sub("", text[start:]))
        record = _from_sidecar(sidecar, raw, kind) if sidecar else None
        if record is None:
            record = parse_page(body, front, path.stem) if kind == "page" else parse_post(body, front, path.stem)
    except ValueError as exc:  # an unclosed raw tag, an invalid date
        raise PostFormatError(f"{path}: {exc}") from None
    return Document(front, body, record)


def better_on_disk(path: Path, record: PostRecord) -> bool:
    """Whether the post at ``path`` has more papers, translations or explainers than ``record``: the
    rewrite guard, judged by records, so model text cannot sway it. A file that cannot be read as a
    post is no better than anything."""
    try:
        found = read(path)
    except (OSError, PostFormatError) as exc:
        log.warning("%s", exc)
        return False
    if found is None or not isinstance(found.record, PostRecord):
        return False
    return any(new < old for new, old in zip(record.quality, found.record.quality, strict=True))


_JEKYLL_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})-(.+)$")
_ANY_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def document_date(front: Mapping[str, Any], stem: str) -> date | None:
    """Date from ``date:``, else the Jekyll file name ``YYYY-MM-DD-slug``, else any date in the name;
    None when there is none. An invalid date is a ``ValueError``."""
    value = front.get("date")
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    jekyll = _JEKYLL_NAME.match(stem)
    text = str(value) if value else (jekyll[1] if jekyll else "")
    found = _ANY_DATE.search(text) or _ANY_DATE.search(stem)
    if not found:
        return None
    try:
        return date.fromisoformat(found[0])
    except ValueError:
        raise ValueError(f"invalid date {found[0]!r}") from None


def names(value: Any) -> tuple[str, ...]:
    """A front-matter list (``tags``, ``categories``); a string is split on spaces, as Jekyll does."""
    if not value:
        return ()
    items = value.split() if isinstance(value, str) else value if isinstance(value, list) else [value]
    return tuple(dict.fromkeys(str(n).strip() for n in items if n is not None and str(n).strip()))


# ---------------------------------------------------------------------------------------------------
# Reading the Markdown: top-level blocks of the CommonMark event stream

_PARSER = pyromark.Markdown(options=pyromark.Options.ENABLE_TABLES)
Event = Any  # pyromark's events: one-key dicts, or the bare strings "SoftBreak", "HardBreak", "Rule"


@dataclass
class _Block:
    """One top-level block: its kind ("Paragraph", "Heading", "List", "HtmlBlock", "BlockQuote",
    "Rule", ...), heading level, byte range in the source, and the events inside it."""

    kind: str
    level: int
    start: int
    end: int
    events: list[tuple[Event, dict[str, int]]] = field(default_factory=list)

    def text(self) -> str:
        """Its plain text: text and code, breaks as spaces, raw HTML left out."""
        return _text(event for event, _ in self.events)

    def html(self) -> str:
        """The raw HTML of an HTML block."""
        return "".join(e["Html"] for e, _ in self.events if isinstance(e, dict) and "Html" in e)


def _text(events: Iterator[Event] | Sequence[Event]) -> str:
    out = []
    for event in events:
        if isinstance(event, dict):
            piece = event.get("Text") or event.get("Code")
            if piece:
                out.append(piece)
        elif event in ("SoftBreak", "HardBreak"):
            out.append(" ")
    return "".join(out)


def _blocks(markdown: str) -> list[_Block]:
    blocks: list[_Block] = []
    depth, current = 0, None
    for event, span in _PARSER.events_with_range(markdown, merge_text=True):
        if isinstance(event, dict) and "Start" in event:
            depth += 1
            if depth == 1:
                tag = event["Start"]
                kind = tag if isinstance(tag, str) else next(iter(tag))
                level = int(tag["Heading"]["level"][1]) if kind == "Heading" else 0
                current = _Block(kind, level, span["start"], span["end"])
                continue
        elif isinstance(event, dict) and "End" in event:
            depth -= 1
            if depth == 0 and current is not None:
                blocks.append(current)
                current = None
                continue
        elif depth == 0:
            if event == "Rule":
                blocks.append(_Block("Rule", 0, span["start"], span["end"]))
            continue
        if current is not None:
            current.events.append((event, span))
    return blocks


class _Source:
    """The Markdown source, sliced by the parser's UTF-8 byte ranges."""

    def __init__(self, markdown: str) -> None:
        self.data = markdown.encode()

    def __call__(self, start: int, end: int) -> str:
        return self.data[start:end].decode().strip()


def _key_value(block_events: list[tuple[Event, dict[str, int]]]) -> Iterator[tuple[str, list[Event]]]:
    """The items of a metadata list: ``- **Key**: value`` -> (key, the value's events)."""
    items: list[list[Event]] = []
    depth = 0
    for event, _ in block_events:
        if isinstance(event, dict) and "Start" in event:
            depth += 1
            if depth == 1 and event["Start"] == "Item":
                items.append([])
                continue
        elif isinstance(event, dict) and "End" in event:
            depth -= 1
            if depth == 0:
                continue
        if items:
            items[-1].append(event)
    for item in items:
        events = [e for e in item if e not in ({"Start": "Paragraph"}, {"End": "Paragraph"})]
        if len(events) >= 3 and events[0] == {"Start": "Strong"} and events[2] == {"End": "Strong"}:
            key = _text(events[1:2])
            yield key, events[3:]


def _value_text(events: list[Event]) -> str:
    return _text(events).lstrip(":： ").strip()


def _link(events: list[Event]) -> tuple[str, str]:
    """The first link of a value: (target, text)."""
    for n, event in enumerate(events):
        if isinstance(event, dict) and isinstance(event.get("Start"), dict) and "Link" in event["Start"]:
            target = event["Start"]["Link"]["dest_url"]
            rest = events[n + 1 :]
            end = next((i for i, e in enumerate(rest) if e == {"End": "Link"}), len(rest))
            return target, _text(rest[:end])
    return "", ""


_ABS_ID = re.compile(r"/abs/(.+?)(?:v(\d+))?/?$")


def parse_post(body: str, front: Mapping[str, Any], stem: str) -> PostRecord:
    """A daily post in the reference format, from its body (after Liquid) and front matter."""
    blocks = _blocks(body)
    source = _Source(body)
    papers: list[PaperRecord] = []
    fetched = shown = None
    in_details = False
    n = 0
    while n < len(blocks):
        block = blocks[n]
        if block.kind == "HtmlBlock":
            in_details = _details_state(block.html(), in_details)
        elif block.kind == "List" and not papers and fetched is None:
            fetched, shown = _counts(block)
        elif (
            block.kind == "Heading"
            and block.level == 2
            and not in_details
            and n + 1 < len(blocks)
            and blocks[n + 1].kind == "List"
        ):
            fields_ = dict(_key_value(blocks[n + 1].events))
            if LABEL.authors in fields_:
                paper, n = _paper(block.text(), fields_, blocks, n + 2, source)
                papers.append(paper)
                continue
        n += 1
    return PostRecord(
        document_date(front, stem),
        str(front.get("title") or stem),
        names(front.get("tags")),
        fetched,
        shown,
        tuple(papers),
    )


def _details_state(html: str, inside: bool) -> bool:
    """Whether the reader is inside a ``<details>`` after an HTML block."""
    opened, closed = html.rfind("<details"), html.rfind("</details")
    return opened > closed if opened >= 0 or closed >= 0 else inside


def _counts(block: _Block) -> tuple[int | None, int | None]:
    """The intro's "抓取总数：N 篇 | 本页显示：M 篇" line."""
    found = [re.search(rf"{re.escape(label)}[：:]\s*(\d+)", block.text()) for label in (LABEL.fetched, LABEL.shown)]
    return (int(found[0][1]) if found[0] else None), (int(found[1][1]) if found[1] else None)


def _paper(
    title: str, metadata: dict[str, list[Event]], blocks: list[_Block], n: int, source: _Source
) -> tuple[PaperRecord, int]:
    """A paper from its heading and metadata list, then the blocks from ``n``: its text up to a
    ``<details>``, a rule or the next heading, and the explainer inside ``<details>``. Returns the
    record and the index of the first block after the paper."""
    abs_url, _ = _link(metadata.get(LABEL.arxiv, []))
    pdf_url, _ = _link(metadata.get(LABEL.pdf, []))
    page_url, page_title = _link(metadata.get(LABEL.page, []))
    found = _ABS_ID.search(abs_url)
    text_blocks: list[_Block] = []
    while n < len(blocks) and blocks[n].kind not in ("HtmlBlock", "Rule", "Heading"):
        text_blocks.append(blocks[n])
        n += 1
    explainer = None
    if n < len(blocks) and blocks[n].kind == "HtmlBlock" and "<details" in blocks[n].html():
        explainer, n = _explainer(blocks, n, source)
    translation = abstract = None
    if text_blocks and text_blocks[-1].text().strip() == LABEL.pending:
        abstract = source(text_blocks[0].start, text_blocks[-2].end) if len(text_blocks) > 1 else None
    elif text_blocks:
        translation = source(text_blocks[0].start, text_blocks[-1].end)
    while n < len(blocks) and blocks[n].kind == "Rule":
        n += 1
    paper = PaperRecord(
        arxiv_id=found[1] if found else "",
        version=int(found[2]) if found and found[2] else None,
        title=title,
        authors=tuple(a.strip() for a in _value_text(metadata[LABEL.authors]).split(",") if a.strip()),
        categories=tuple(c.strip() for c in _value_text(metadata.get(LABEL.categories, [])).split(",") if c.strip()),
        abs_url=abs_url,
        pdf_url=pdf_url,
        translation=translation or None,
        abstract=abstract or None,
        explainer=explainer,
        page_url=page_url or None,
        page_title=page_title or None,
    )
    return paper, n


def _explainer(blocks: list[_Block], n: int, source: _Source) -> tuple[str | None, int]:
    """The Markdown between the HTML that opens ``<details>`` (with its ``<summary>`` and the
    ``<div markdown="1">``) and the HTML that closes it; the index after ``</details>``."""
    start = blocks[n].end
    while n + 1 < len(blocks) and blocks[n + 1].kind == "HtmlBlock" and "</" not in blocks[n + 1].html():
        n += 1
        start = blocks[n].end
    end = start
    n += 1
    while n < len(blocks):
        if blocks[n].kind == "HtmlBlock" and "</details" in blocks[n].html():
            n += 1
            break
        if not (blocks[n].kind == "HtmlBlock" and blocks[n].html().strip().startswith("</div")):
            end = blocks[n].end
        n += 1
    return (source(start, end) or None) if end > start else None, n


def parse_page(body: str, front: Mapping[str, Any], stem: str) -> PageRecord:
    """A per-paper page in the reference layout, from its body (after Liquid) and front matter. Each
    part is recognised on its own; what is not a part of the layout is kept in ``other``."""
    blocks = _blocks(body)
    source = _Source(body)
    classes = names(front.get("categories"))
    category = classes[0] if classes else ""
    reason = en_title = zh = en = None
    other: list[str] = []
    after_abstract = False
    for n, block in enumerate(blocks):
        text = block.text().strip()
        if block.kind == "Heading" and block.level == 1 and n == 0:
            continue  # the Chinese title, which the front matter holds too
        if block.kind == "Heading" and block.level == 1 and text == LABEL.abstract:
            after_abstract = True
        elif block.kind == "Paragraph" and text.startswith(f"{LABEL.published}："):
            continue
        elif block.kind == "Paragraph" and text == f"`{category}":
            continue  # the class, opening the reference's backtick pair across a blank line
        elif block.kind == "Paragraph" and text.startswith(f"{LABEL.reason}："):
            paragraph = source(block.start, block.end)
            reason = paragraph.split("：", 1)[1].split("`", 1)[0].strip() or None
        elif block.kind == "BlockQuote" and not after_abstract and en_title is None:
            en_title = " ".join(text.split())
        elif block.kind == "BlockQuote" and after_abstract and (zh is None or en is None):
            quoted = _unquote(source(block.start, block.end))
            zh, en = (quoted, None) if zh is None else (zh, quoted)
        elif block.kind == "Paragraph" and text == LABEL.arxiv_link and _link(_events(block))[0]:
            continue
        else:
            other.append(source(block.start, block.end))
    return PageRecord(
        arxiv_id=page_id(front, stem),
        date=document_date(front, stem),
        title=str(front.get("title") or stem),
        category=category,
        reason=reason,
        tags=names(front.get("tags")),
        en_title=en_title,
        abstract_zh=zh,
        abstract_en=en,
        permalink=str(front.get("permalink") or ""),
        other="\n\n".join(other) or None,
    )


def _events(block: _Block) -> list[Event]:
    return [event for event, _ in block.events]


def _unquote(block: str) -> str:
    return "\n".join(re.sub(r"^[ \t]{0,3}>[ \t]?", "", line) for line in block.split("\n")).strip()
