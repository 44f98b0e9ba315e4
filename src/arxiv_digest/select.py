"""Dedup and filters: pure functions from fetched papers to what a post shows."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from .config import FilterConfig
from .models import Paper, Selection, Window


def dedup(papers: Iterable[Paper]) -> list[Paper]:
    """One paper per version-less id, keeping its latest version."""
    latest: dict[str, Paper] = {}
    for paper in papers:
        kept = latest.get(paper.arxiv_id)
        if kept is None or paper.version > kept.version:
            latest[paper.arxiv_id] = paper
    return list(latest.values())


@cache
def _phrase(keyword: str) -> re.Pattern[str]:
    """Whole-word/phrase match, case-insensitive, any whitespace between the words of a phrase."""
    words = [re.escape(word) for word in keyword.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def matches_any(text: str, keywords: Iterable[str]) -> bool:
    return any(_phrase(keyword).search(text) for keyword in keywords)


def keep(paper: Paper, categories: Iterable[str], rules: FilterConfig) -> bool:
    wanted = set(categories)
    if rules.primary_only:
        if paper.primary_category not in wanted:
            return False
    elif not wanted.intersection(paper.categories):
        return False
    text = f"{paper.title}\n{paper.summary}"
    if rules.include_keywords and not matches_any(text, rules.include_keywords):
        return False
    return not matches_any(text, rules.exclude_keywords)


def post_order(papers: Iterable[Paper]) -> list[Paper]:
    """Newest submission first, as in the reference posts; ids break ties so output is stable."""
    return sorted(papers, key=lambda p: (p.published, p.arxiv_id), reverse=True)


def select(
    papers: Iterable[Paper],
    window: Window,
    categories: Iterable[str],
    rules: FilterConfig,
    shown_elsewhere: Iterable[str] = (),
    shown_here: Iterable[str] = (),
) -> Selection:
    """What the post of ``window`` shows.

    Ids in ``shown_elsewhere`` belong to other posts and are never shown twice; ids in
    ``shown_here`` were already published in this post and stay, whatever the filters say now,
    so a post never loses a paper. ``fetched`` counts unique papers in the window before filtering.
    """
    in_window = [p for p in dedup(papers) if window.contains(p.published)]
    elsewhere, pinned = set(shown_elsewhere), set(shown_here)
    kept = [p for p in in_window if p.arxiv_id in pinned]
    candidates = [p for p in in_window if p.arxiv_id not in pinned | elsewhere and keep(p, categories, rules)]
    room = max(rules.max_papers - len(kept), 0) if rules.max_papers else len(candidates)
    shown = post_order(kept + post_order(candidates)[:room])
    return Selection(
        shown=tuple(shown),
        fetched=len(in_window),
        left_out_by_cap=len(candidates) - min(room, len(candidates)),
    )
