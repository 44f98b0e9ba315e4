"""The build manifest (inputs and outputs of the last build, kept in the site folder), what it keeps
of each source, and the digests that decide what is stale."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

from ..files import write_atomic

MANIFEST = ".build-manifest.json"
_CODE = (Path(__file__).parent, Path(__file__).parents[1] / "postformat")


class PaperLink(NamedTuple):
    """A paper of a daily post as listings link to it (a named tuple: the manifest holds one per paper
    of every post, and tuples load fastest)."""

    anchor: str  # its heading's id in the post, "" when the post has no heading for it
    title: str  # sanitised inline HTML
    categories: tuple[str, ...]
    arxiv_id: str


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the listings need to know about a source file, kept in the manifest between builds: a
    daily post, or a per-paper page (one with an ``arxiv_id``, its ``classes``, front-matter
    ``categories``: its class in the pipeline's taxonomy, and its English title)."""

    source: str
    digest: str
    title: str
    date: date
    url: str
    tags: tuple[str, ...]
    papers: tuple[PaperLink, ...] = ()
    stamp: str = ""  # size and mtime of the source and its record, to skip reading unchanged files
    arxiv_id: str = ""  # only on a per-paper page
    classes: tuple[str, ...] = ()
    en_title: str = ""  # a per-paper page's English title (sanitised inline HTML), once read

    @property
    def is_page(self) -> bool:
        return bool(self.arxiv_id)

    @property
    def categories(self) -> tuple[str, ...]:
        """Front-matter tags other than ``arxiv``, then every paper's categories, first seen first."""
        names = [t for t in self.tags if t.lower() != "arxiv"]
        names += [c for p in self.papers for c in p.categories]
        return tuple(dict.fromkeys(names))

    @property
    def month(self) -> str:
        return f"{self.date:%Y-%m}"

    def to_json(self) -> dict[str, Any]:
        extra = {"arxiv_id": self.arxiv_id, "classes": list(self.classes), "en_title": self.en_title}
        return (extra if self.is_page else {}) | {
            "source": self.source,
            "digest": self.digest,
            "title": self.title,
            "date": self.date.isoformat(),
            "url": self.url,
            "tags": list(self.tags),
            "papers": [[p.anchor, p.title, list(p.categories), p.arxiv_id] for p in self.papers],
            "stamp": self.stamp,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceInfo:
        papers = tuple(PaperLink(a, t, tuple(c), i) for a, t, c, i in data["papers"])
        return cls(
            data["source"],
            data["digest"],
            data["title"],
            date.fromisoformat(data["date"]),
            data["url"],
            tuple(data["tags"]),
            papers,
            data["stamp"],
            data.get("arxiv_id", ""),
            tuple(data.get("classes", ())),
            data.get("en_title", ""),
        )


def digest(*parts: Any) -> str:
    return hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=12).hexdigest()


def key(*parts: str) -> str:
    """``digest`` of strings, cheaper: it runs for every source of every build."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def file_digest(*parts: bytes) -> str:
    """A digest of bytes (of a post and its record's size and mtime: both, one after the other)."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part)
        hasher.update(b"\0")
    return hasher.hexdigest()


def renderer_version() -> str:
    """Changes whenever the site's code, the post format's reader or the converters change, which
    invalidates everything an earlier build kept."""
    code = sorted(path for folder in _CODE for path in folder.glob("*.py"))
    return digest([file_digest(p.read_bytes()) for p in code], version("pyromark"), version("nh3"))


@dataclass
class Manifest:
    """Inputs and outputs of the last build. ``complete`` is false while a build is writing, so a
    build that died half-way is followed by a full one; its outputs are still known for cleaning."""

    renderer: str = ""
    config: str = ""
    complete: bool = False
    sources: dict[str, SourceInfo] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    # each source as loaded and its JSON, which is saved again as is while the source is that same object
    loaded: dict[str, tuple[SourceInfo, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, site_dir: Path) -> Manifest:
        try:
            data = json.loads((site_dir / MANIFEST).read_text(encoding="utf-8"))
            loaded = {k: (SourceInfo.from_json(v), v) for k, v in data["sources"].items()}
            return cls(
                data["renderer"],
                data["config"],
                data["complete"],
                {k: info for k, (info, _) in loaded.items()},
                data["outputs"],
                loaded,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def _source_json(self, source: str, info: SourceInfo) -> dict[str, Any]:
        known = self.loaded.get(source)
        return known[1] if known and known[0] is info else info.to_json()

    def save(self, site_dir: Path) -> None:
        data = {
            "renderer": self.renderer,
            "config": self.config,
            "complete": self.complete,
            "sources": {k: self._source_json(k, v) for k, v in self.sources.items()},
            "outputs": self.outputs,
        }
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        write_atomic(os.path.join(site_dir, MANIFEST), text, durable=False)
