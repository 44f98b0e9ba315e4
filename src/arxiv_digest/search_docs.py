"""What the site's search index is given (``SearchDoc``) and reports (``SearchUpdate``), and whether
an index on disk can be updated: the part of ``search_index`` that the building process needs
without the index's machinery (numpy and the segment code, a third of the imports of adding a post).
An incremental build hands its index update to a forked process, which loads that machinery
itself while the build renders the listings."""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .errors import DigestError

FORMAT = 1
DIGESTS = 2  # how page digests are made (``page_digest``); a state made otherwise is rebuilt
META = "meta.gz"
STATE = "search-index.sqlite"
EPOCH = date(1970, 1, 1)
WEIGHTS = {
    "title": 5.0,
    "title_zh": 5.0,
    "authors": 4.0,
    "arxiv_id": 4.0,
    "categories": 2.0,
    "paper_class": 3.0,
    "tags": 3.0,
    "translation": 1.0,
    "explainer": 0.5,
}
AUTHORS_SHOWN = 3


class SearchIndexError(DigestError):
    """The index on disk and its state disagree in a way an incremental build cannot repair."""


@dataclass(frozen=True)
class SearchDoc:
    """One paper as search sees it. ``url`` is site-relative: the post's URL and ``#anchor``, or the
    paper page's URL. The papers of one page (``source``, else the URL before ``#``) share its date;
    ``add`` and ``remove`` name pages."""

    url: str
    date: date
    title: str
    title_zh: str = ""  # a paper page's Chinese title
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    translation: str = ""
    explainer: str = ""
    paper_class: str = ""
    tags: tuple[str, ...] = ()
    arxiv_id: str = ""
    source: str = ""  # the page it is filed under when ``url`` links elsewhere (a paper shown by its own page)

    @property
    def page(self) -> str:
        return self.source or self.url.split("#", 1)[0]

    @property
    def day(self) -> int:
        return (self.date - EPOCH).days

    def fields(self) -> list[tuple[float, str]]:
        texts = {
            "title": self.title,
            "title_zh": self.title_zh,
            "authors": "\n".join(self.authors),  # no word pairs across names
            "arxiv_id": self.arxiv_id,
            "categories": "\n".join(self.categories),
            "paper_class": self.paper_class,
            "tags": "\n".join(self.tags),
            "translation": self.translation,
            "explainer": self.explainer,
        }
        return [(WEIGHTS[name], text) for name, text in texts.items() if text]

    def record(self) -> dict[str, Any]:
        """What a search result shows (see the module docstring)."""
        values: dict[str, Any] = {
            "u": self.url,
            "d": self.date.isoformat(),
            "t": self.title,
            "h": self.title_zh,
            "a": list(self.authors[:AUTHORS_SHOWN]),
            "n": len(self.authors) if len(self.authors) > AUTHORS_SHOWN else 0,
            "c": list(self.categories),
            "z": self.translation,
            "k": self.paper_class,
            "g": list(self.tags),
            "i": self.arxiv_id,
        }
        return {key: value for key, value in values.items() if value}


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def record_json(doc: SearchDoc) -> str:
    return compact_json(doc.record())


_WEIGHTS_SIGNATURE = json.dumps(WEIGHTS, sort_keys=True).encode()


def doc_digest(doc: SearchDoc, record: str) -> bytes:
    """What a paper shows and is found by (its record, all its authors, its explainer; the weights)."""
    digest = hashlib.sha256(_WEIGHTS_SIGNATURE)
    for part in (record, "\x1e".join(doc.authors), doc.explainer):
        digest.update(b"\x00")
        digest.update(part.encode())
    return digest.digest()


def page_digest(digests: Sequence[bytes]) -> str:
    """A page's digest from its papers' (``doc_digest``, in order): a page whose digest is unchanged
    keeps its postings."""
    return hashlib.sha256(b"".join(digests)).hexdigest()


def docs_digest(docs: Sequence[SearchDoc]) -> str:
    """``page_digest`` of a page's papers."""
    return page_digest([doc_digest(doc, record_json(doc)) for doc in docs])


@dataclass(frozen=True)
class SearchUpdate:
    """What ``finish()`` did: paths relative to the search folder."""

    written: tuple[str, ...]
    removed: tuple[str, ...]
    papers: int
    segments: int
    days_indexed: int


def published_layout(db: sqlite3.Connection, folder: Path) -> dict[str, Any] | None:
    """The layout in the state ``db`` when it matches the published ``meta.gz`` in ``folder`` and
    the last build completed."""
    row = db.execute("SELECT value FROM kv WHERE key = 'layout'").fetchone()
    if row is None:
        return None
    layout = json.loads(row[0])
    try:
        meta = json.loads(gzip.decompress((folder / META).read_bytes()))
    except (OSError, ValueError):
        return None
    complete = layout.get("complete") and layout.get("format") == FORMAT and layout.get("digests") == DIGESTS
    return layout if complete and meta.get("generation") == layout["generation"] else None


def indexed_digests(state_dir: Path) -> dict[str, str]:
    """Each page in the index's state (in ``state_dir``, which ``updatable`` found) with its digest
    (``page_digest``), read without the index's code."""
    db = sqlite3.connect(state_dir / STATE)
    try:
        return dict(db.execute("SELECT page, digest FROM pages"))
    finally:
        db.close()


def updatable(folder: Path, state_dir: Path) -> bool:
    """Whether the index in ``folder`` with its state in ``state_dir`` can be updated, rather than
    built afresh; nothing is created."""
    path = state_dir / STATE
    if not path.is_file():
        return False
    db = sqlite3.connect(path)
    try:
        return published_layout(db, folder) is not None
    except sqlite3.DatabaseError:  # not ours, or from before the layout was kept
        return False
    finally:
        db.close()
