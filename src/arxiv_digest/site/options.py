"""What to build, what went wrong, and what a build did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DigestError


class SiteError(DigestError):
    """A post, template or output path that stops the build; the message names the file."""


@dataclass(frozen=True)
class SiteOptions:
    """What to build. ``templates_dirs`` are searched first; the packaged ``templates/site`` comes last
    and can still be reached as ``{% extends "!default/base.html" %}``."""

    posts_dir: Path
    site_dir: Path
    templates_dirs: tuple[Path, ...] = ()
    title: str = "arXiv Daily"
    base_url: str = ""
    posts_per_listing: int = 20  # daily posts on the index, on a category's listing and on each older one
    incremental: bool = True
    papers_per_listing: int = 50  # paper pages per class or tag listing
    state_dir: Path | None = None  # what a build keeps for the next one, outside the published folder
    search: bool = True  # the search page and its index (off: neither, and a built index is removed)


def state_folder(options: SiteOptions) -> Path:
    """Where a build keeps its state: ``state_dir``, else a hidden folder beside the site folder."""
    return options.state_dir or options.site_dir.parent / f".{options.site_dir.name}-state"


@dataclass(frozen=True)
class BuildReport:
    """What a build did; ``written`` lists site-relative paths, for tests and ``--verbose``."""

    posts: int
    written: tuple[str, ...]
    skipped: int
    removed: tuple[str, ...]
    seconds: float
    full: bool
    pages: int = 0  # per-paper pages; ``posts`` counts the daily posts only
    converted: int = 0  # Markdown conversions run; the others were reused from the build state

    def summary(self) -> str:
        kind = "full" if self.full else "incremental"
        pages = f"{self.pages} paper pages, " if self.pages else ""
        return (
            f"Done: {self.posts} posts, {pages}{len(self.written)} files written, {self.skipped} unchanged, "
            f"{len(self.removed)} removed, {self.converted} conversions ({kind} build) in {self.seconds:.2f} s"
        )
