"""Turn an arXiv paper's full text (HTML or PDF bytes) into plain text for an LLM.

Pure functions only: bytes in, text out.  Fetching is someone else's job, which keeps
these easy to test against stored captures and safe to call from anywhere.

The arXiv HTML view is LaTeXML output.  We keep what helps a reader judge the paper
(title, abstract, headings, paragraphs, lists, captions, maths as LaTeX) and drop what
only costs tokens (bibliography, appendices, acknowledgements, page chrome, MathML).
"""

from __future__ import annotations

import io
import itertools
import logging
import re
from collections.abc import Callable, Iterator

import lxml.etree
import lxml.html

__all__ = ["TRIM_MARKER", "latexml_text", "pdf_text", "trim_for_llm"]

TRIM_MARKER = "[…]"

# --------------------------------------------------------------------------- HTML

# Elements never worth reading; skipping them also keeps the walk fast (MathML, SVG).
_SKIP_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "img",
        "button",
        "input",
        "textarea",
        "select",
        "form",
        "dialog",
        "nav",
        "header",
        "footer",
        "head",
        "title",
        "meta",
        "link",
        "iframe",
        "object",
        "video",
        "audio",
        "canvas",
    }
)

# LaTeXML classes whose whole subtree is dropped.
_SKIP_CLASSES = frozenset(
    {
        "ltx_bibliography",
        "ltx_appendix",
        "ltx_acknowledgements",
        "ltx_acknowledgments",
        "ltx_authors",  # names/affiliations/e-mails: the API metadata has the authors
        "ltx_role_footnotetext",  # author notes ("Equal contribution", addresses)
        "ltx_note_mark",  # footnote markers (†, 1, …)
        "ltx_note_type",  # "footnotetext: "
        "ltx_tag_note",
        "ltx_tag_listingline",  # listing line numbers
        "ltx_listing_data",  # "download listing" data: URL
        "ltx_ERROR",  # LaTeXML's rendering of undefined macros
        "ltx_pagination",
        "ltx_page_navbar",
        "ltx_page_header",
        "ltx_page_footer",
        "ltx_page_logo",
        "ltx_TOC",
        "ltx_index",
        "ltx_glossary",
        "ltx_tabular",  # table bodies: only captions are kept (see _float)
        "ltx_graphics",
        "ltx_rdf",
        "ltx_dates",
    }
)

# Top-level document children from which on everything is supplementary matter.
_STOP_CLASSES = frozenset({"ltx_appendix", "ltx_bibliography"})

_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    }
)

_HEADING_LEVEL_BY_CLASS = {
    "ltx_title_document": 1,
    "ltx_title_abstract": 2,
    "ltx_title_part": 2,
    "ltx_title_chapter": 2,
    "ltx_title_section": 2,
    "ltx_title_subsection": 3,
    "ltx_title_subsubsection": 4,
    "ltx_title_paragraph": 5,
    "ltx_title_subparagraph": 6,
}

_WS = re.compile(r"\s+")
_ACK_TITLE = re.compile(r"(?:[\dIVXivx]+\.?\s+)?acknowledge?ments?\s*[.:]?", re.IGNORECASE)
_LIST_CLASSES = frozenset({"ltx_itemize", "ltx_enumerate", "ltx_description"})
_BULLETS = frozenset({"•", "∙", "◦", "▪", "‣", "–", "-", "—", "*", "·", "○", "■", "□"})
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def _classes(el: lxml.etree._Element) -> set[str]:
    c = el.get("class")
    return set(c.split()) if c else set()


def _norm(s: str) -> str:
    return _WS.sub(" ", s.translate(_ZERO_WIDTH)).strip()


def _tex(math: lxml.etree._Element) -> str:
    """LaTeX source of a <math>: alttext, else the TeX annotation, else its text."""
    tex = math.get("alttext")
    if tex is None:
        for ann in math.iter("{*}annotation", "annotation"):
            if (ann.get("encoding") or "").endswith("tex"):
                tex = ann.text or ""
                break
        else:
            tex = "".join(math.itertext())
    tex = _norm(tex)
    return re.sub(r"^(?:\\displaystyle|\\textstyle)\s*", "", tex)


class _ListBlock(str):
    """A rendered list, so an enclosing list item can keep it on indented lines."""


class _Extractor:
    """One pass over the LaTeXML tree; builds blocks (paragraph strings)."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.footnotes: list[str] = []
        self._capturing = 0
        self._list_depth = 0
        self._runin = ""  # run-in title ("Theorem 1.", "Proof.") waiting for its paragraph

    # ---- inline -----------------------------------------------------------------

    def inline(self, el: lxml.etree._Element) -> str:
        """Text of el on one line, maths as $LaTeX$, footnotes set aside."""
        parts: list[str] = []
        self._inline_into(el, parts)
        return _norm("".join(parts))

    def _inline_into(self, el: lxml.etree._Element, parts: list[str]) -> None:
        tag = el.tag
        if not isinstance(tag, str):  # comment / processing instruction
            return
        local = tag.rpartition("}")[2]
        if local == "math":
            tex = _tex(el)
            if tex:
                block = el.get("display") == "block"
                parts.append(f" $${tex}$$ " if block else f"${tex}$")
            return
        if local in _SKIP_TAGS:
            return
        cls = _classes(el)
        if cls & _SKIP_CLASSES:
            return
        if "ltx_note" in cls:
            self._footnote(el)
            return
        if local == "br":
            parts.append(" ")
            return
        if el.text:
            parts.append(el.text)
        for child in el:
            self._inline_into(child, parts)
            if child.tail:
                parts.append(child.tail)
        if local in _BLOCK_TAGS:
            parts.append(" ")

    def code_lines(self, listing: lxml.etree._Element) -> list[str]:
        """Listing lines keep their indentation (whitespace matters in code)."""
        lines: list[str] = []
        for ln in listing.iter():
            if "ltx_listingline" in _classes(ln):
                parts: list[str] = []
                self._inline_into(ln, parts)
                text = "".join(parts).translate(_ZERO_WIDTH).replace("\xa0", " ").rstrip()
                lines.append(text.strip("\n"))
        while lines and not lines[-1].strip():
            lines.pop()
        return lines

    def _footnote(self, note: lxml.etree._Element) -> None:
        """Footnotes are moved after their paragraph so they do not split a sentence."""
        num = ""
        for tag in note.iterfind(".//*[@class]"):
            if "ltx_tag_note" in _classes(tag):
                num = _norm("".join(tag.itertext()))
                break
        content = note
        for c in note.iterfind(".//*[@class]"):
            if "ltx_note_content" in _classes(c):
                content = c
                break
        text = self.inline(content)
        if text:
            self.footnotes.append(f"Footnote {num}: {text}" if num else f"Footnote: {text}")

    # ---- blocks -----------------------------------------------------------------

    def emit(self, text: str) -> None:
        if text and self._runin:
            text, self._runin = f"{self._runin} {text}", ""
        if text:
            self.blocks.append(text)
        if not self._capturing:
            self.blocks.extend(self.footnotes)
            self.footnotes = []

    def capture(self, fn: Callable[[], None]) -> list[str]:
        """Run fn() collecting its blocks instead of emitting them (footnotes wait)."""
        outer, self.blocks = self.blocks, []
        self._capturing += 1
        try:
            fn()
        finally:
            self._capturing -= 1
            inner, self.blocks = self.blocks, outer
        return inner

    def document(self, doc: lxml.etree._Element) -> None:
        for child in doc:
            if not isinstance(child.tag, str):
                continue
            if _classes(child) & _STOP_CLASSES:
                break  # appendices / bibliography and whatever follows them
            self.block(child)

    def block(self, el: lxml.etree._Element) -> None:
        tag = el.tag
        if not isinstance(tag, str):
            return
        local = tag.rpartition("}")[2]
        if local in _SKIP_TAGS:
            return
        cls = _classes(el)
        if cls & _SKIP_CLASSES:
            return
        if local in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.heading(el, local, cls)
        elif "ltx_keywords" in cls or "ltx_classification" in cls:
            self.emit(self.inline(el))
        elif local == "section" or "ltx_abstract" in cls:
            if self._is_acknowledgements(el):
                return
            self.container(el)
        elif local == "figure" or "ltx_float" in cls:
            self._float(el)
        elif local == "table" and cls & {"ltx_equation", "ltx_equationgroup", "ltx_eqn_table"}:
            self.equation(el)
        elif local == "table":
            return  # layout or data tables outside floats: not prose
        elif local in ("ul", "ol", "dl") or cls & _LIST_CLASSES:
            self.emit(self.listing(el))
        elif "ltx_listing" in cls:
            self.emit("\n".join(self.code_lines(el)))
        elif local == "pre":
            self.emit("".join(el.itertext()).strip("\n"))
        elif "ltx_para" in cls:
            self.para(el)
        else:
            self.container(el)

    def container(self, el: lxml.etree._Element, claim: Callable[[lxml.etree._Element], bool] | None = None) -> None:
        """Block children become blocks; runs of loose inline content become paragraphs. ``claim``
        may take a child for itself (a list item's marker); its tail text still counts."""
        run: list[str] = [el.text or ""]
        for child in el:
            tag = child.tag
            if claim is not None and claim(child):
                pass
            elif isinstance(tag, str) and tag.rpartition("}")[2] in _BLOCK_TAGS:
                self.emit(_norm("".join(run)))
                run = []
                self.block(child)
            else:
                self._inline_into(child, run)
            if child.tail:
                run.append(child.tail)
        self.emit(_norm("".join(run)))

    def para(self, el: lxml.etree._Element) -> None:
        """An ltx_para is one logical paragraph: its pieces go on consecutive lines."""
        blocks = self.capture(lambda: self.container(el))
        if self._list_depth and any(isinstance(b, _ListBlock) for b in blocks):
            # Inside a list item: hand nested lists through so they stay indented lines.
            text = "\n".join(b for b in blocks if not isinstance(b, _ListBlock))
            self.emit(text)
            for b in blocks:
                if isinstance(b, _ListBlock):
                    self.blocks.append(b)
        else:
            self.emit("\n".join(blocks))

    def heading(self, el: lxml.etree._Element, local: str, cls: set[str]) -> None:
        text = self.inline(el)
        if not text:
            return
        level = next((lv for c, lv in _HEADING_LEVEL_BY_CLASS.items() if c in cls), None)
        if level is None:
            if "ltx_runin" in cls:
                self._runin = text
                return
            level = int(local[1])
        self.emit("#" * level + " " + text)

    def _is_acknowledgements(self, section: lxml.etree._Element) -> bool:
        for child in section:
            if isinstance(child.tag, str) and "ltx_title" in _classes(child):
                return bool(_ACK_TITLE.fullmatch(self.inline(child)))
        return False

    def _float(self, el: lxml.etree._Element) -> None:
        """Figures/tables/algorithms: keep the captions (subfigure captions included)."""
        for cap in el.iter("figcaption"):
            self.emit(self.inline(cap))
        for cap in el.iterfind(".//*[@class]"):
            c = _classes(cap)
            if "ltx_caption" in c and cap.tag != "figcaption":
                self.emit(self.inline(cap))

    def equation(self, table: lxml.etree._Element) -> None:
        """Display maths: one $$…$$ line per row (aligned cells joined), plus its number."""
        lines: list[str] = []
        for row in table.iter("tr"):
            texs: list[str] = []
            tag = ""
            for cell in row:
                if not isinstance(cell.tag, str):
                    continue
                if "ltx_eqn_eqno" in _classes(cell):
                    tag = _norm("".join(cell.itertext()))
                    continue
                for m in cell.iter("{*}math", "math"):
                    tex = _tex(m)
                    if tex:
                        texs.append(tex)
                if not texs:
                    text = self.inline(cell)
                    if text:
                        texs.append(f"\\text{{{text}}}")
            if texs:
                lines.append(f"$${' '.join(texs)}$$" + (f" {tag}" if tag else ""))
            elif tag and lines:
                lines[-1] += f" {tag}"
        self.emit("\n".join(lines))

    def listing(self, lst: lxml.etree._Element) -> _ListBlock:
        """Lists as '- item' / '1. item' lines (description lists '- term: text'), nested indented."""
        out: list[str] = []
        indent = "  " * self._list_depth
        self._list_depth += 1
        term = ""
        try:
            for item in lst:
                if not isinstance(item.tag, str) or item.tag not in ("li", "dt", "dd"):
                    continue
                marker, body, nested = self._item(item)
                if item.tag == "dt":
                    term = " ".join(x for x in (marker if marker != "-" else "", body) if x)
                    continue
                if item.tag == "dd" and term:
                    marker, body = "-", f"{term}: {body}" if body else term
                term = ""
                out.append(f"{indent}{marker} {body}".rstrip())
                out.extend(nested)
            if term:
                out.append(f"{indent}- {term}")
        finally:
            self._list_depth -= 1
        return _ListBlock("\n".join(x for x in out if x.strip()))

    def _item(self, item: lxml.etree._Element) -> tuple[str, str, list[_ListBlock]]:
        """(marker, one-line body, nested list blocks) of a list item."""
        marker = "-"

        def take_marker(child: lxml.etree._Element) -> bool:
            nonlocal marker
            if not isinstance(child.tag, str) or "ltx_tag_item" not in _classes(child):
                return False
            tag = _norm("".join(child.itertext()))
            marker = "-" if not tag or tag in _BULLETS else tag
            return True

        blocks = self.capture(lambda: self.container(item, take_marker))
        nested = [b for b in blocks if isinstance(b, _ListBlock)]
        text = " ".join(b.replace("\n", " ") for b in blocks if not isinstance(b, _ListBlock))
        return marker, text, nested


def _find_class(root: lxml.etree._Element, name: str) -> lxml.etree._Element | None:
    for el in root.iter():
        if isinstance(el.tag, str) and name in _classes(el):
            return el
    return None


def _is_latexml(root: lxml.etree._Element) -> lxml.etree._Element | None:
    """The LaTeXML document root if this page is a real conversion, else None.

    arXiv answers 200 with error/placeholder pages, so HTTP status is not enough.
    """
    doc = _find_class(root, "ltx_document")
    if doc is None:
        main = _find_class(root, "ltx_page_main")
        if main is None:
            return None
        content = _find_class(main, "ltx_page_content")
        doc = main if content is None else content
    for el in doc.iter():
        if isinstance(el.tag, str) and "ltx_para" in _classes(el):
            return doc
    return None


def latexml_text(html: bytes) -> str | None:
    """Body text of an arXiv HTML (LaTeXML) page, or None if it is not a real conversion.

    Headings become '## 2 Method' lines, maths its LaTeX ($…$ inline, $$…$$ display),
    figures/tables their captions; bibliography, appendices, acknowledgements and
    page chrome are dropped.  Blocks are separated by blank lines.
    """
    if not html or not html.strip():
        return None
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        root = lxml.html.document_fromstring(html, parser=parser)
    except (lxml.etree.LxmlError, ValueError):
        return None
    if root is None:
        return None
    doc = _is_latexml(root)
    if doc is None:
        return None
    ex = _Extractor()
    ex.document(doc)
    ex.emit(ex._runin)
    text = "\n\n".join(b for b in ex.blocks if b.strip())
    return text or None


# --------------------------------------------------------------------------- PDF

_REFS_HEADING = re.compile(
    r"^[ \t]*(?:(?:\d+|[IVXL]+)\.?[ \t]+)?(?:References|REFERENCES|Bibliography|BIBLIOGRAPHY)[ \t]*$",
    re.MULTILINE,
)
# A references heading in the first quarter is a table of contents, not the list.
_REFS_MIN_POSITION = 0.25
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})


def _strip_references(text: str) -> str:
    floor = int(len(text) * _REFS_MIN_POSITION)
    for m in _REFS_HEADING.finditer(text):
        if m.start() >= floor:
            return text[: m.start()]
    return text


_LINE_BREAK_HYPHEN = re.compile(r"([^\W\d_]+)-[ \t]*\n[ \t]*([a-z]\w*)")
_HYPHENATED = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)+")


def _dehyphenate(text: str) -> str:
    """Join words split across lines ('trans-\nformation' -> 'transformation').

    A compound the paper also writes hyphenated on one line ('well-known') keeps its
    hyphen; a break before a digit or capital ('GPT-\n4') is left alone.
    """
    compounds: set[str] = set()
    for m in _HYPHENATED.finditer(text):
        parts = m.group().lower().split("-")
        compounds.update(f"{a}-{b}" for a, b in itertools.pairwise(parts))

    def join(m: re.Match[str]) -> str:
        left, right = m.group(1), m.group(2)
        sep = "-" if f"{left}-{right}".lower() in compounds else ""
        return f"{left}{sep}{right}"

    return _LINE_BREAK_HYPHEN.sub(join, text)


def _clean_pdf_text(text: str) -> str:
    text = text.translate(_LIGATURES).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u00ad\n", "").replace("\u00ad", "")
    text = _dehyphenate(text)
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def pdf_text(pdf: bytes) -> str | None:
    """Text of a PDF via pypdf (BSD), or None if it is not a PDF or has no text layer.

    Everything from a 'References'/'Bibliography' heading on is dropped (it is noise
    for a reader and usually followed only by appendices).
    """
    if not pdf or b"%PDF-" not in pdf[:1024]:
        return None
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - pypdf is a project dependency
        return None
    pypdf_log = logging.getLogger("pypdf")
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)  # malformed PDFs are routine; do not spam logs
    try:
        reader = PdfReader(io.BytesIO(pdf), strict=False)
        pages = [(page.extract_text() or "") for page in reader.pages]
    except Exception:  # pypdf raises many exception types on broken input
        return None
    finally:
        pypdf_log.setLevel(level)
    text = _clean_pdf_text("\n\n".join(pages))
    text = _strip_references(text).strip()
    return text or None


# --------------------------------------------------------------------------- trimming

_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s)")


def _last(it: Iterator[re.Match[str]]) -> re.Match[str] | None:
    m = None
    for m in it:  # noqa: B007 - we want the last match
        pass
    return m


def trim_for_llm(text: str, budget: int) -> str:
    """Cut `text` to at most `budget` characters so an LLM prompt stays within limits.

    Prefers a paragraph break, then a line/sentence end, then a word boundary (never
    mid-word), and ends with a final line '[…]' so the model knows text is missing.
    Text that already fits is returned unchanged.
    """
    budget = max(budget, 0)
    if len(text) <= budget:
        return text
    # text[budget] exists, so cuts at index `budget` itself are still visible.
    cut = -1
    para = text.rfind("\n\n", 0, budget + 1)
    if para >= budget * 0.7:
        cut = para
    if cut < 0:
        lo = int(budget * 0.5)
        line = text.rfind("\n", lo, budget + 1)
        m = _last(_SENTENCE_END.finditer(text, lo, budget + 1))
        sentence = m.end() if m else -1
        if max(line, sentence) >= lo:
            cut = max(line, sentence)
    if cut < 0:
        cut = budget
        while cut > 0 and not text[cut].isspace():
            cut -= 1
    body = text[:cut].rstrip()
    return f"{body}\n{TRIM_MARKER}" if body else TRIM_MARKER
