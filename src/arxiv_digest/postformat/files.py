"""Posts and pages on disk with their records: the sidecar beside each, reading a file back (its
record when the sidecar matches, else its Markdown), and the rewrite guard."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .jekyll import XML_INVALID, PostFormatError, apply_liquid_raw, decode, front_matter, page_id
from .reader import parse_page, parse_post
from .records import PageRecord, PaperRecord, PostRecord, Record

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1


def sidecar_name(name: str) -> str:
    """The name of the record of the post or page named ``name``: a dot-file beside it."""
    return f".{name}.json"


def sidecar_path(path: Path) -> Path:
    """Where the record of the post or page at ``path`` lives."""
    return path.with_name(sidecar_name(path.name))


def write(path: Path, text: str, record: Record) -> list[Path]:
    """Write a post or page and its record, the record first; each only when it differs from what is
    on disk (a post from before records existed gets its record on the next run). Returns the files
    written."""
    side = sidecar_path(path)
    data = json.dumps(_sidecar(text, record), ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    written = []
    for file, content in ((side, data), (path, text)):  # the record first
        if _read_text(file) != content:
            write_atomic(file, content)
            written.append(file)
    return written


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


def _from_sidecar(data: bytes, raw: bytes) -> Record | None:
    """The record in sidecar bytes ``data`` when it describes exactly ``raw`` (the file's bytes),
    else None: the file is then read by its Markdown. A record whose fields are not this version's
    (``SIDECAR_FORMAT`` changes with them) is not used either."""
    try:
        found = json.loads(data)
        kind = found.get("kind")
        if found.get("format") != SIDECAR_FORMAT or kind not in ("post", "page") or found.get("sha256") != _sha256(raw):
            return None
        body = dict(found[kind])
        body["date"] = date.fromisoformat(body["date"]) if body.get("date") else None
        body["tags"] = tuple(body["tags"])
        if kind == "page":
            return PageRecord(**body)
        body["papers"] = tuple(
            PaperRecord(**paper | {"authors": tuple(paper["authors"]), "categories": tuple(paper["categories"])})
            for paper in body["papers"]
        )
        return PostRecord(**body)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.debug("unusable sidecar (%s); reading the Markdown", exc)
        return None


@dataclass(frozen=True)
class Document:
    """A post or page as Jekyll would read it: its front matter and its body after Liquid, with its
    record (from the sidecar when it matches, else from the Markdown)."""

    front: dict[str, Any]
    body: str
    record: Record


def read(path: Path) -> Document | None:
    """The post or page at ``path``, or None when it has no front matter and so is no post."""
    found = _read(path, body=True)
    return Document(found[0], found[1], found[2]) if found else None


def read_record(path: Path) -> Record | None:
    """Only the record of the post or page at ``path``: when its sidecar matches, the file is not
    even decoded."""
    found = _read(path, body=False)
    return found[2] if found else None


def _read(path: Path, body: bool) -> tuple[dict[str, Any], str, Record] | None:
    """Front matter, body after Liquid and record; without ``body``, a matching sidecar is all that is
    read (front matter and body are then empty)."""
    raw = path.read_bytes()
    try:
        sidecar = sidecar_path(path).read_bytes()
    except OSError:
        sidecar = b""
    record = _from_sidecar(sidecar, raw) if sidecar else None
    if record is not None and not body:
        return {}, "", record
    text = decode(raw, path)
    found = front_matter(text, path)
    if found is None:
        return None
    front, start = found
    page = bool(page_id(front, path.stem))
    if record is not None and isinstance(record, PageRecord) != page:
        record = None  # the front matter says otherwise: believe the file
    try:
        markdown = apply_liquid_raw(XML_INVALID.sub("", text[start:]))
        if record is None:
            record = parse_page(markdown, front, path.stem) if page else parse_post(markdown, front, path.stem)
    except ValueError as exc:  # an unclosed raw tag, an invalid date
        raise PostFormatError(f"{path}: {exc}") from None
    return front, markdown, record


def better_on_disk(path: Path, record: PostRecord) -> bool:
    """Whether the post at ``path`` has more papers, translations or explainers than ``record``: the
    rewrite guard, judged by records, so model text cannot sway it. A file that cannot be read as a
    post is no better than anything."""
    try:
        found = read_record(path)
    except (OSError, PostFormatError) as exc:
        log.warning("%s", exc)
        return False
    if not isinstance(found, PostRecord):
        return False
    return any(new < old for new, old in zip(record.quality, found.quality, strict=True))
