"""Reading a post or page that has no matching record beside it: its Markdown in the reference
format, through the CommonMark event stream (top-level blocks, never regexes over the text)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyromark
from pyromark.event import Range

from .jekyll import document_date, names, page_id
from .records import LABEL, PageRecord, PaperRecord, PostRecord

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
    events: list[Event] = field(default_factory=list)

    def text(self) -> str:
        """Its plain text: text and code, breaks as spaces, raw HTML left out."""
        return event_text(self.events)

    def html(self) -> str:
        """The raw HTML of an HTML block."""
        return "".join(e["Html"] for e in self.events if type(e) is dict and "Html" in e)


_BLOCK_ENDS = frozenset({"Paragraph", "Item", "CodeBlock", "TableCell", "HtmlBlock"})


def event_text(events: Iterable[Event]) -> str:
    """The plain text of events: text and code, breaks and block ends as spaces, raw HTML left out."""
    out = []
    for event in events:
        if type(event) is dict:
            piece = event.get("Text") or event.get("Code")
            if piece:
                out.append(piece)
            elif "End" in event:
                tag = event["End"]
                if type(tag) is dict or tag in _BLOCK_ENDS:
                    out.append(" ")
        elif event in ("SoftBreak", "HardBreak"):
            out.append(" ")
    return "".join(out)


def _blocks(markdown: str) -> list[_Block]:
    """The top-level blocks (a tight loop: it sees every event of every post without a record)."""
    blocks: list[_Block] = []
    depth = 0
    current = _Block("", 0, 0, 0)
    events: Iterator[tuple[Any, Range]] = _PARSER.events_with_range(markdown, merge_text=True)
    for event, span in events:
        if depth:
            if type(event) is dict:
                if "End" in event:
                    depth -= 1
                    if not depth:
                        blocks.append(current)
                        continue
                elif "Start" in event:
                    depth += 1
            current.events.append(event)
        elif type(event) is dict and "Start" in event:
            depth = 1
            tag = event["Start"]
            kind = tag if type(tag) is str else next(iter(tag))
            level = int(tag["Heading"]["level"][1]) if kind == "Heading" else 0
            current = _Block(kind, level, span["start"], span["end"])
        elif event == "Rule":
            blocks.append(_Block("Rule", 0, span["start"], span["end"]))
    return blocks


class _Source:
    """The Markdown source, sliced by the parser's UTF-8 byte ranges."""

    def __init__(self, markdown: str) -> None:
        self.data = markdown.encode()

    def __call__(self, start: int, end: int) -> str:
        return self.data[start:end].decode().strip("\n")


def _key_value(block_events: list[Event]) -> Iterator[tuple[str, list[Event]]]:
    """The items of a metadata list: ``- **Key**: value`` -> (key, the value's events)."""
    items: list[list[Event]] = []
    depth = 0
    for event in block_events:
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
            key = event_text(events[1:2])
            yield key, events[3:]


def _value_text(events: list[Event]) -> str:
    return event_text(events).lstrip(":： ").strip()


def _link(events: list[Event]) -> tuple[str, str]:
    """The first link of a value: (target, text)."""
    for n, event in enumerate(events):
        if isinstance(event, dict) and isinstance(event.get("Start"), dict) and "Link" in event["Start"]:
            target = event["Start"]["Link"]["dest_url"]
            rest = events[n + 1 :]
            end = next((i for i, e in enumerate(rest) if e == {"End": "Link"}), len(rest))
            return target, event_text(rest[:end])
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
        elif not in_details and (metadata := _paper_start(blocks, n)) is not None:
            paper, n = _paper(block.text(), metadata, blocks, n + 2, source)
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


def _paper_start(blocks: list[_Block], n: int) -> dict[str, list[Event]] | None:
    """The metadata of the paper whose ``##`` heading is block ``n``: the list right after it, read
    by its keys, when it has the authors key. Any other heading (a model's, the late papers') starts
    no paper."""
    if not (blocks[n].kind == "Heading" and blocks[n].level == 2 and n + 1 < len(blocks)):
        return None
    if blocks[n + 1].kind != "List":
        return None
    metadata = dict(_key_value(blocks[n + 1].events))
    return metadata if LABEL.authors in metadata else None


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
    ``<details>``, a rule or the next paper, and the explainer inside ``<details>``. Returns the
    record and the index of the first block after the paper."""
    abs_url, _ = _link(metadata.get(LABEL.arxiv, []))
    pdf_url, _ = _link(metadata.get(LABEL.pdf, []))
    page_url, page_title = _link(metadata.get(LABEL.page, []))
    found = _ABS_ID.search(abs_url)
    text_blocks: list[_Block] = []
    while n < len(blocks) and blocks[n].kind not in ("HtmlBlock", "Rule") and _paper_start(blocks, n) is None:
        text_blocks.append(blocks[n])
        n += 1
    explainer = None
    if n < len(blocks) and blocks[n].kind == "HtmlBlock" and "<details" in blocks[n].html():
        explainer, n = _explainer(blocks, n, source)
    translation = abstract = None
    if text_blocks and text_blocks[-1].text().strip() in (LABEL.pending, LABEL.unavailable):
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
        elif block.kind == "Paragraph" and text == LABEL.arxiv_link and _link(block.events)[0]:
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


def _unquote(block: str) -> str:
    return "\n".join(re.sub(r"^[ \t]{0,3}>[ \t]?", "", line) for line in block.split("\n")).strip()
