"""What Jekyll reads of a post or page: its front matter, its Liquid ``raw`` tags, its date and lists."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import DigestError


class PostFormatError(DigestError):
    """A post or page that cannot be read (not UTF-8, broken front matter, unclosed Liquid raw tag);
    the message names the file."""


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
