"""Posts and pages on disk with their records: the sidecar beside each, reading a file back (its
record when the sidecar matches, else its Markdown), and the rewrite guard."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any, Literal

from ..files import write_atomic
from .jekyll import XML_INVALID, PostFormatError, apply_liquid_raw, decode, front_matter, page_id
from .reader import parse_page, parse_post
from .records import PageRecord, PaperRecord, PostRecord, Record

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1


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


@dataclass(frozen=True)
class Document:
    """A post or page as Jekyll would read it: its front matter and its body after Liquid, with its
    record (from the sidecar when it matches, else from the Markdown)."""

    front: dict[str, Any]
    body: str
    record: Record


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
