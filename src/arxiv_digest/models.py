"""Frozen dataclasses passed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

TextKind = Literal["translation", "explainer", "page"]
"""What the LLM writes for a paper: the abstract's translation, the explainer, and the page info
(``PageInfo``) of the paper's own page. "page" always means that per-paper page (config ``pages``)."""


@dataclass(frozen=True)
class Window:
    """A post's half-open submission-time window ``[start, end)``; both ends are aware datetimes."""

    day: date
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Author:
    name: str
    affiliation: str | None = None


@dataclass(frozen=True)
class Paper:
    """One arXiv entry as the API returned it (one version of a paper)."""

    arxiv_id: str  # version-less, e.g. "2601.09603"
    version: int
    entry_id: str  # as returned: "http://arxiv.org/abs/2601.09603v1"
    title: str
    summary: str
    authors: tuple[Author, ...]
    published: datetime  # v1 submission time, UTC
    updated: datetime  # this version's submission time, UTC
    primary_category: str
    categories: tuple[str, ...]  # primary first
    abs_url: str
    pdf_url: str
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    doi_url: str | None = None

    @property
    def versioned_id(self) -> str:
        return f"{self.arxiv_id}v{self.version}"


@dataclass(frozen=True)
class Selection:
    """Outcome of dedup + filtering for one window."""

    shown: tuple[Paper, ...]  # in post order
    fetched: int  # unique papers in the window, before filtering
    left_out_by_cap: int = 0


@dataclass(frozen=True)
class PageInfo:
    """What the LLM writes for a paper's own page (``PaperPage``): Chinese title, class with its reason, tags."""

    title: str
    category: str
    reason: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Texts:
    """What the LLM stage produced for a paper; ``None`` means still pending."""

    translation: str | None = None
    explainer: str | None = None
    page: PageInfo | None = None
    unavailable: bool = False  # the LLM stage gave up on this paper (llm.pending_max_runs)

    @property
    def complete(self) -> bool:
        return self.translation is not None and self.explainer is not None


@dataclass(frozen=True)
class PostEntry:
    paper: Paper
    texts: Texts = field(default_factory=Texts)
    page_url: str | None = None  # the paper's own page, when pages are enabled and written


@dataclass(frozen=True)
class PaperPage:
    """A paper's own page (config ``pages``): everything ``paper.md.j2`` needs."""

    paper: Paper
    day: date  # submission date in the window's time zone
    translation: str
    info: PageInfo
    permalink: str


@dataclass(frozen=True)
class Post:
    """Everything a post template needs; rendering it is a pure function."""

    window: Window
    timezone: str  # IANA zone the window is shown in
    timezone_label: str  # "CST，北京时间"
    timezone_short: str  # "CST"
    anchor: str
    tags: tuple[str, ...]
    fetched: int
    entries: tuple[PostEntry, ...]
    left_out_by_cap: int = 0
    late: tuple[LateNote, ...] = ()


@dataclass(frozen=True)
class LateNote:
    """A paper added to an earlier post after that post was first written."""

    day: date
    title: str
    abs_url: str
