"""The site's sources: every post and per-paper page in the posts folder, what the listings need to
know about each (kept in the manifest), and which must be read again."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from .. import postformat
from ..postformat import PageRecord, PostFormatError, PostRecord
from .manifest import SourceInfo, file_digest
from .options import SiteError, SiteOptions

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def load_post(path: Path) -> tuple[str, PostRecord]:
    """A daily post read again by a build that must convert it: its body after Liquid, its record."""
    found = _read(postformat.read, path)
    if not isinstance(found.record, PostRecord):
        raise SiteError(f"{path}: became a paper page during the build")
    return found.body, found.record


def load_record(path: Path) -> PostRecord:
    """Only a daily post's record."""
    record = _read(postformat.read_record, path)
    if not isinstance(record, PostRecord):
        raise SiteError(f"{path}: became a paper page during the build")
    return record


def load_page(path: Path) -> PageRecord:
    """A per-paper page read again by a build that must convert it: its record."""
    record = _read(postformat.read_record, path)
    if not isinstance(record, PageRecord):
        raise SiteError(f"{path}: stopped being a paper page during the build")
    return record


def _read(reader: Callable[[Path], _T | None], path: Path) -> _T:
    try:
        found = reader(path)
    except PostFormatError as exc:
        raise SiteError(str(exc)) from None
    if found is None:
        raise SiteError(f"{path}: front matter disappeared during the build")
    return found


def _files(posts_dir: Path) -> list[tuple[str, str, str]]:
    """(posts_dir-relative name, path, path of its record) of every ``.md``/``.markdown`` file,
    skipping names that start with ``.`` or ``_`` and folders named so. ``os.walk`` on strings: a
    site with a page per paper has tens of thousands of them, and pathlib's per-file objects cost
    more than the stat calls."""
    found = []
    root = str(posts_dir)
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        prefix = os.path.relpath(folder, root).replace(os.sep, "/") + "/"
        prefix = "" if prefix == "./" else prefix
        found += [
            (prefix + name, folder + os.sep + name, folder + os.sep + postformat.sidecar_name(name))
            for name in files
            if name.endswith((".md", ".markdown")) and not name.startswith((".", "_"))
        ]
    return sorted(found)


def _stat(path: str) -> str:
    """Size and mtime, "" for a missing file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return ""
    return f"{info.st_size}:{info.st_mtime_ns}"


def scan(options: SiteOptions, previous: dict[str, SourceInfo]) -> list[tuple[SourceInfo, str, bool]]:
    """Every source, what the listings need of it, and whether it must be read and converted. A file
    whose size and mtime (and its record's) match the manifest is not even read, one whose bytes
    match (and whose record's size and mtime) is not parsed. The record itself is only read by the
    conversion: reading 20,000 small records twice costs more than converting the rare post whose
    record was touched but not changed."""
    if not options.posts_dir.is_dir():
        raise SiteError(f"posts folder {options.posts_dir} does not exist")
    found = []
    for source, path, record in _files(options.posts_dir):
        record_stamp = _stat(record)
        stamp = f"{_stat(path)}/{record_stamp}"
        old = previous.get(source)  # (a post whose HTML is gone is written again from its kept conversion)
        if old and old.stamp == stamp:
            found.append((old, path, False))
            continue
        file = Path(path)
        data = file.read_bytes()
        digest = file_digest(data, record_stamp.encode())
        if old and old.digest == digest:
            found.append((replace(old, stamp=stamp), path, False))
            continue
        try:
            front = _front_matter(data, file)
        except PostFormatError as exc:
            raise SiteError(str(exc)) from None
        if front is None:
            log.warning("%s: no front matter, not a post; skipped", path)
            continue
        found.append((_info(source, file, digest, stamp, front[0]), path, True))
    return found


def _front_matter(data: bytes, file: Path) -> tuple[dict[str, Any], int] | None:
    """The front matter, decoding only the lines up to the first that starts with ``---`` after the
    opening one (a quarter of a full build's scan went into decoding whole posts; the conversion
    decodes and checks the body), and the whole file when that is not where it ends."""
    end = data.find(b"\n---", 3)
    line_end = data.find(b"\n", end + 4) if end >= 0 else -1
    if line_end >= 0:
        found = postformat.front_matter(postformat.decode(data[: line_end + 1], file), file)
        if found is not None:
            return found
    return postformat.front_matter(postformat.decode(data, file), file)


def _info(source: str, path: Path, digest: str, stamp: str, front: dict[str, Any]) -> SourceInfo:
    """What the front matter says: date (``date:``, else the file name), URL (``permalink:``, else
    Jekyll's ``YYYY/MM/DD/slug.html``), title, tags, and a per-paper page's id and class."""
    try:
        day = postformat.document_date(front, path.stem)
    except ValueError as exc:
        raise SiteError(f"{path}: {exc}") from None
    if day is None:
        raise SiteError(f"{path}: no date (front matter `date:` or a YYYY-MM-DD file name)")
    jekyll = re.match(r"^\d{4}-\d{2}-\d{2}-(.+)$", path.stem)
    slug = jekyll[1] if jekyll else path.stem
    url = permalink(str(front["permalink"]), path) if front.get("permalink") else f"{day:%Y/%m/%d}/{_slug(slug)}.html"
    arxiv_id = postformat.page_id(front, path.stem)
    return SourceInfo(
        source,
        digest,
        str(front.get("title") or path.stem),
        day,
        url,
        postformat.names(front.get("tags")),
        stamp=stamp,
        arxiv_id=arxiv_id,
        classes=postformat.names(front.get("categories")) if arxiv_id else (),
    )


def permalink(value: str, path: Path) -> str:
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
