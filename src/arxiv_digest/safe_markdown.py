"""Untrusted text (arXiv metadata, model answers) as Markdown that kramdown (Jekyll), CommonMark (the
built-in site) and Liquid all read as the same harmless text.

Parse, allow-list, re-serialise. A model answer is parsed with a real CommonMark parser
(pulldown-cmark, through pyromark); paragraphs, line breaks, emphasis, lists, inline code and maths are
kept and written back in one conservative form, in which every character that kramdown, CommonMark or
Liquid could read as markup is escaped. Everything else (raw HTML, links, images, reference
definitions, headings, quotes, fences, indented code, rules, setext underlines, ``{: …}`` and
``{::…}``) is written back as its own source, escaped, so a reader sees what the model wrote and no
renderer sees markup in it. arXiv metadata is plain text: every special character is escaped, only
``$…$`` maths is kept as maths. Control characters become visible symbols.

Where the readers disagree, the output avoids the disagreement instead of guessing: ``1)`` is text for
kramdown, so it is text here too; a code span never holds a run of two backticks, a ``|`` or a line
break; a character that one reader escapes and another does not is written as a character reference.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pyromark

# Private-use stand-ins used while parsing, mapped back before anything is written: ``N)`` at a line
# start (not a list marker for kramdown) and ``[`` at a line start (no reference definitions).
PAREN, BRACKET = "\ue000", "\ue001"
UNMAP = str.maketrans({PAREN: ")", BRACKET: "["})
CONTAINER_PREFIX = r"(?:[ \t]*+(?:>|[-+*][ \t]++|\d{1,9}\.[ \t]++))*+[ \t]*+"  # possessive: no backtracking
NOT_A_MARKER = re.compile(rf"^({CONTAINER_PREFIX}\d{{1,9}})\)(?=[ \t]|$)", re.M)
LINE_START_BRACKET = re.compile(rf"^({CONTAINER_PREFIX})\[", re.M)

ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
KRAMDOWN_ESCAPABLE = frozenset("\\.*_+`<>()[]{}#!:|\"'$=-~")
ALWAYS = {"*": "\\*", "[": "\\[", "]": "\\]", "|": "\\|", "<": "&lt;", ">": "&gt;", "`": "&#96;", "$": "&#36;"}
AT_LINE_START = {"#": "\\#", "-": "\\-", "+": "\\+", "=": "\\=", ":": "\\:", "^": "&#94;", "~": "&#126;"}
LIST_MARKER = re.compile(rb"([-+*]|\d{1,9}[.)])( *)(\n|$)?", re.M)
MATH_REFERENCES = {
    **{char: f"&#{ord(char)};" for char in "`*[]|'\""},
    **{"<": "&lt;", ">": "&gt;", "&": "&amp;"},
}
ORDINARY = re.compile(r"[^\n*\[\]|<>`$&\\_{~#]+")  # needs no escape anywhere but at a line start
ORDERED_MARKER = re.compile(r"\d{1,9}[.)](?=[ \t\n]|\Z)")
ENTITY_START = re.compile(r"[#:\w]")
TAG_START = re.compile(r"<[A-Za-z/!?]")
MATH_IN_PLAIN = re.compile(
    r"\$\$(?P<display>[^$]+?)\$\$|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?![\d$])"
)
VISIBLE: dict[int, str] = {
    **{code: chr(0x2400 + code) for code in range(0x20) if chr(code) not in "\t\n"},  # ␀ … ␟
    0x7F: "\u2421",  # ␡
    **dict.fromkeys([*range(0x80, 0xA0), *range(0xD800, 0xE000), ord(PAREN), ord(BRACKET)], "\ufffd"),
    **dict.fromkeys([0x85, 0x2028, 0x2029], "\u2424"),  # ␤
}
LIQUID_OPENER = re.compile(r"\{(?=[{%])")
URL_SAFE = "-._~:/?#@!$+,;=%*'"
PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
MAX_DEPTH = 16  # lists or emphasis nested deeper than this are written as their source


def _visible_controls(text: str) -> str:
    """Control characters (other than tab and line feed) and Unicode line/paragraph separators become
    visible symbols; lone surrogates and the parser's stand-ins become U+FFFD."""
    return text.translate(VISIBLE)


def protect_liquid(text: str) -> str:
    """Jekyll runs Liquid over posts: the ``{`` of every ``{{``/``{%`` left (inside code spans and
    display maths, where a character reference would show as such) goes behind a raw tag."""
    return LIQUID_OPENER.sub("{% raw %}{{% endraw %}", text)


class _Out:
    """The output, line by line, with what the escaping rules need to know about the position."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.line: list[str] = []
        self.indent = ""  # prefix of continuation lines in the current container
        self.fresh = True  # nothing written on this line after its prefix
        self.marker = False  # this line carries a list marker
        self.last = "\n"  # last character written
        self.keep = ""  # trailing spaces the source had after the paragraph just written

    def start(self, head: str, marker: bool = False, replace: bool = False) -> None:
        """Begin a new line with ``head`` (indentation, and a list marker if ``marker``). A line holding
        only its indentation is dropped; with ``replace``, so is one holding only a list marker."""
        if self.line and not (self.fresh and (replace or not self.marker)):
            self.end()
        self.line = [head]
        self.fresh, self.marker, self.last, self.keep = True, marker, head[-1:] or "\n", ""

    def write(self, text: str) -> None:
        if text:
            if not self.line:
                self.start(self.indent)
            self.line.append(text)
            self.fresh, self.last, self.keep = False, text[-1], ""

    def end(self, trailing: str = "") -> None:
        """End the current line; ``trailing`` is a hard break's two spaces."""
        content = "".join(self.line)
        if not (self.marker and self.fresh):  # an empty item keeps "- ": kramdown needs the space
            content = content.rstrip(" \t")
        self.lines.append(content + (trailing or self.keep) if content.strip() else "")
        self.line, self.last, self.keep = [], "\n", ""

    def newline(self, hard: bool = False) -> None:
        """A line break inside a paragraph: the next line continues the current container."""
        self.end("  " if hard else "")
        self.start(self.indent)

    def blank(self) -> None:
        """End the line and leave one empty line; the next line starts in the current container."""
        if self.line:
            self.end()
        if self.lines and self.lines[-1]:
            self.lines.append("")
        self.start(self.indent)

    def head(self) -> str:
        """The current line if nothing but its prefix is on it (that is where a nested list starts)."""
        return "".join(self.line) if self.fresh and self.line else self.indent

    def text(self) -> str:
        if self.line:
            self.end()
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return "\n".join(self.lines)


def _escape(out: _Out, text: str, *, heading: bool = False) -> None:
    """Write plain text so that no reader sees markup in it."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            out.newline()
            while i + 1 < n and text[i + 1] in " \t":
                i += 1
            i += 1
            continue
        if not out.fresh and (ordinary := ORDINARY.match(text, i)):
            out.write(ordinary[0])
            i = ordinary.end()
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if out.fresh:
            if char in " \t":
                i += 1
                continue
            if marker := ORDERED_MARKER.match(text, i):
                digits = marker.group()[:-1]
                closer = marker.group()[-1]
                keep = closer == ")" and not out.marker
                out.write(digits + (closer if keep else "\\" + closer))
                i = marker.end()
                continue
            if char in AT_LINE_START:
                out.write(AT_LINE_START[char])
                i += 1
                continue
        out.write(_escape_char(char, out.last, nxt, heading))
        i += 1


def _escape_char(char: str, prev: str, nxt: str, heading: bool) -> str:
    if char in ALWAYS:
        return ALWAYS[char]
    if char == "&":
        return "&amp;" if not nxt or ENTITY_START.match(nxt) else "&"
    if char == "\\":
        return "&#92;" if not nxt or nxt in ASCII_PUNCTUATION else "\\"
    if char == "_":
        return "_" if prev.isalpha() and (nxt.isalpha() or nxt.isdecimal()) else "\\_"
    if char == "{":
        return "&#123;" if not nxt or nxt in "{%:#" else "{"
    if char == "~":
        return "&#126;" if nxt == "~" else "~"
    if char == "#" and heading and not nxt:  # a closing sequence would be dropped from the heading
        return "\\#"
    return char


def _math_text(tex: str) -> str:
    """Inline maths content, read as text by kramdown and as TeX (after entity decoding) by the site:
    every character kramdown would read as markup or typeset (``--``, ``...``, quotes) is a character
    reference, so both show the same TeX."""
    out, last = [], "$"
    for i, char in enumerate(tex):
        nxt = tex[i + 1] if i + 1 < len(tex) else ""
        if char in MATH_REFERENCES:
            piece = MATH_REFERENCES[char]
        elif (
            (char == "_" and not last.isalpha())
            or (char == "{" and (not nxt or nxt in "{%:#"))
            or (char in "~-." and nxt == char)
            or (char == "\\" and (not nxt or nxt in KRAMDOWN_ESCAPABLE))
        ):
            piece = f"&#{ord(char)};"
        else:
            piece = " " if char == "\n" else char
        out.append(piece)
        last = piece[-1]
    return "".join(out)


def _display_ok(tex: str) -> bool:
    """``$$…$$`` is raw for kramdown and entity-decoded by the site: kept only when both show the same
    text and no renderer can read HTML or a table in it."""
    return (
        "$" not in tex and "|" not in tex and "`" not in tex and html.unescape(tex) == tex and not TAG_START.search(tex)
    )


def _math(out: _Out, tex: str, display: bool, source: str) -> None:
    """Maths as ``$…$`` or ``$$…$$`` in a form both renderers show as the same TeX; otherwise its source,
    as text."""
    tex = tex.replace("\n", " ")
    if "$" in tex or out.last == "$" or not tex.strip() or (display and not _display_ok(tex)):
        _escape(out, source)
    elif display:
        out.write(f"$${tex}$$")
    else:
        out.write("$" + _math_text(tex) + "$")


def _code(out: _Out, content: str, source: str) -> None:
    """An inline code span that kramdown and CommonMark delimit alike: one backtick, or two (padded
    with spaces) when the content holds single backticks; anything else is written as text."""
    content = content.replace("\n", " ").strip()
    if not content or "``" in content or "|" in content or out.last == "`":
        _escape(out, source)
    elif "`" in content:
        out.write(f"`` {content} ``")
    else:
        out.write(f"`{content}`")


def plain(text: str, *, heading: bool = False) -> str:
    """One line of arXiv text (title, authors, abstract, category, URL) as literal Markdown: nothing in
    it is markup, except ``$…$`` maths, shown as TeX by the site and as text by kramdown."""
    text = _visible_controls(re.sub(r"[ \t\n\r]+", " ", str(text)).strip(" "))
    if text[:1].isalpha() and ORDINARY.fullmatch(text):  # most titles and names: nothing to escape
        return text
    out = _Out()
    out.start("")
    pos = 0
    for match in MATH_IN_PLAIN.finditer(text):
        _escape(out, text[pos : match.start()])
        display = match["display"] is not None
        _math(out, match["display"] if display else match["inline"], display, match[0])
        pos = match.end()
    _escape(out, text[pos:], heading=heading)
    return protect_liquid(out.text())


def link_target(url: str) -> str:
    """A link destination: only http(s) URLs and site paths; everything a reader could take for the end
    of the link, an entity, Liquid or a new line is percent-encoded. Anything else becomes ``#``."""
    url = str(url).strip()
    if not re.match(r"(?:https?://|/(?![/\\]))", url):
        return "#"
    return PERCENT_ESCAPE.sub("%25", quote(url, safe=URL_SAFE))


# --- model answers --------------------------------------------------------------------------------


@dataclass
class _Node:
    kind: str
    value: Any
    start: int
    end: int
    children: list[_Node] = field(default_factory=list)


def _name(tag: Any) -> tuple[str, Any]:
    if isinstance(tag, dict):
        ((name, value),) = tag.items()
        return name, value
    return str(tag), None


def _tree(events: Iterable[tuple[Any, Any]]) -> _Node:
    """pyromark's flat events (with byte ranges) as a tree."""
    root = _Node("Document", None, 0, 0)
    stack = [root]
    for event, span in events:
        kind, value = _name(event)
        if kind == "Start":
            name, payload = _name(value)
            node = _Node(name, payload, span["start"], span["end"])
            stack[-1].children.append(node)
            stack.append(node)
        elif kind == "End":
            stack.pop()
        else:
            stack[-1].children.append(_Node(kind, value, span["start"], span["end"]))
    return root


INLINE = {"Text", "Code", "InlineMath", "DisplayMath", "SoftBreak", "HardBreak", "Emphasis", "Strong"}
INLINE_SOURCE = {"InlineHtml", "Link", "Image", "FootnoteReference", "TaskListMarker", "Strikethrough"}


class _Answer:
    """Writes a parsed answer back through the allow-list."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.out = _Out()

    def slice(self, start: int, end: int) -> str:
        return self.source[start:end].decode().translate(UNMAP)

    def write(self, root: _Node) -> str:
        self.out.start("")
        self.blocks(root.children, tight=False, depth=0, column=0)
        return self.out.text()

    def blocks(self, nodes: list[_Node], tight: bool, depth: int, column: int | None) -> None:
        """Sibling blocks: a list right under a paragraph stays there when the source had it so (kramdown
        and CommonMark both let a list interrupt a paragraph); tight list items stay tight; any other
        boundary, and every block written as source, gets an empty line."""
        previous: _Node | None = None
        for node in _group_inline(nodes):
            if previous is not None:
                text_then_list = previous.kind in TEXT_BLOCKS and node.kind == "List"
                if (text_then_list and not self._blank_between(previous, node)) or (
                    tight and _kept(previous) and _kept(node)
                ):
                    self.out.end()
                    self.out.start(self.out.indent)
                else:
                    self.out.blank()
            self.block(node, depth, column)
            previous = node

    def _marker(self, item: _Node) -> tuple[int | None, int]:
        """The source column of an item's marker (``None`` if more than spaces precede it on its line),
        and its offset (an item's range may start with the spaces before the marker)."""
        offset = item.start
        while self.source[offset : offset + 1] == b" ":
            offset += 1
        prefix = self.source[self.source.rfind(b"\n", 0, offset) + 1 : offset]
        return (len(prefix) if not prefix.strip(b" ") else None), offset

    def _content_column(self, item: _Node) -> int | None:
        """Where an item's content starts in the source (CommonMark: after the marker and 1-4 spaces)."""
        column, offset = self._marker(item)
        marker = LIST_MARKER.match(self.source, offset)
        if column is None or marker is None:
            return None
        spaces = len(marker[2])
        return column + len(marker[1]) + (spaces if 0 < spaces < 5 and not marker[3] else 1)

    def _blank_between(self, before: _Node, after: _Node) -> bool:
        return self.source[_text_end(before) : after.start].count(b"\n") >= 2

    def block(self, node: _Node, depth: int, column: int | None) -> None:
        if node.kind in TEXT_BLOCKS:
            self.inlines(node.children, depth)
            rest = self.source[_text_end(node) :]
            line = rest.split(b"\n", 1)[0]
            if len(line) < len(rest) and len(line) >= 2 and not line.strip(b" "):
                self.out.keep = "  "  # inert at a paragraph's end, and the reference posts have them
        elif node.kind == "List" and depth < MAX_DEPTH:
            self.write_list(node, depth, column)
        else:
            self.literal(node.start, node.end)

    def write_list(self, node: _Node, depth: int, column: int | None) -> None:
        """Items with ``-`` or ``N.`` and one space; a list keeps the 0-3 spaces the source indented it
        by within its container (kramdown and CommonMark both allow them; the reference posts use two)."""
        loose = any(child.kind == "Paragraph" for item in node.children for child in item.children)
        outer = self.out.indent
        marker_column = self._marker(node.children[0])[0]
        shift = 0
        if column is not None and marker_column is not None and not self.out.marker:
            shift = marker_column - column if 0 <= marker_column - column <= 3 else 0
        outer_shifted = outer + " " * shift
        # a list on its parent item's line alternates its bullet, so "- * " can never read as a rule
        on_marker_line = self.out.marker and self.out.fresh
        bullet = "* " if on_marker_line and self.out.head().rstrip().endswith("-") else "- "
        for index, item in enumerate(node.children):
            marker = bullet if node.value is None else f"{node.value + index}. "
            if index == 0:  # on the line begun for it: after the container's indent or parent's marker
                head = self.out.head() + " " * shift
            else:
                head = outer_shifted
                self.out.end()
                if loose:
                    self.out.blank()
            self.out.start(head + marker, marker=True, replace=True)
            self.out.indent = outer_shifted + " " * len(marker)
            self.blocks(item.children, tight=not loose, depth=depth + 1, column=self._content_column(item))
            self.out.indent = outer

    def literal(self, start: int, end: int) -> None:
        """A construct outside the allow-list, written as its source: one visible line per source line
        (hard breaks), an empty line where the source had one."""
        lines = [line.strip() for line in self.slice(start, end).split("\n")]
        written, gap = False, False
        for line in lines:
            if not line:
                gap = written
                continue
            if gap:
                self.out.blank()
            elif written:
                self.out.newline(hard=True)
            _escape(self.out, line)
            written, gap = True, False

    def inlines(self, nodes: list[_Node], depth: int) -> None:
        for node in nodes:
            kind = node.kind
            if kind == "Text":
                _escape(self.out, node.value.translate(UNMAP))
            elif kind == "SoftBreak":
                self.out.newline()
            elif kind == "HardBreak":
                self.out.newline(hard=True)
            elif kind == "Code":
                _code(self.out, node.value.translate(UNMAP), self.slice(node.start, node.end))
            elif kind in ("InlineMath", "DisplayMath"):  # the site decodes entities in maths, as kramdown does in text
                tex = html.unescape(node.value.translate(UNMAP))
                _math(self.out, tex, kind == "DisplayMath", self.slice(node.start, node.end))
            elif kind in ("Emphasis", "Strong") and depth < MAX_DEPTH and node.children:
                delimiter = "*" if kind == "Emphasis" else "**"
                self.out.write(delimiter)
                self.inlines(node.children, depth + 1)
                self.out.write(delimiter)
            else:
                _escape(self.out, self.slice(node.start, node.end))


TEXT_BLOCKS = ("Paragraph", "Inline")


def _kept(node: _Node) -> bool:
    """Written as itself, not as its source."""
    return node.kind in TEXT_BLOCKS or node.kind == "List"


def _group_inline(nodes: list[_Node]) -> list[_Node]:
    """A tight list item holds its text without a paragraph: group such runs into one pseudo-block."""
    groups: list[_Node] = []
    for node in nodes:
        if node.kind in INLINE or node.kind in INLINE_SOURCE:
            if groups and groups[-1].kind == "Inline":
                groups[-1].children.append(node)
                groups[-1].end = node.end
            else:
                groups.append(_Node("Inline", None, node.start, node.end, [node]))
        else:
            groups.append(node)
    return groups


def _text_end(node: _Node) -> int:
    """Where a paragraph's text ends in the source (its own range may include the line end)."""
    return node.children[-1].end if node.children else node.start


def _neutralise(source: str) -> str:
    """Stand-ins for what kramdown does not read as markup but CommonMark would: ``N)`` list markers, and
    ``[`` at a line start (links are not kept, so no reference definition can be either)."""
    source = NOT_A_MARKER.sub(lambda m: m[1] + PAREN, source)
    source = LINE_START_BRACKET.sub(lambda m: m[1] + BRACKET, source)
    while definitions := pyromark.reference_definitions(source):  # any the pattern missed
        data = source.encode()
        for found in sorted((d["span"]["start"] for d in definitions.values()), reverse=True):
            data = data[:found] + data[found:].replace(b"[", BRACKET.encode(), 1)
        if data == source.encode():
            break  # cannot happen; and a definition left could only hide its own text, never link
        source = data.decode()
    return source


def markdown(text: str) -> str:
    """A model answer (translation, explainer) through the allow-list, as conservative Markdown."""
    source = _visible_controls(re.sub(r"\r\n?", "\n", str(text))).strip("\n")
    if not source.strip():
        return ""
    source = _neutralise(source)
    events = pyromark.events_with_range(source, options=pyromark.Options.ENABLE_MATH, merge_text=True)
    return protect_liquid(_Answer(source).write(_tree(events)))
