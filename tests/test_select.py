"""Selection: dedup, category and keyword filters, cap, order, one post per paper."""

from __future__ import annotations

from datetime import UTC, date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from arxiv_digest.config import FilterConfig
from arxiv_digest.models import Author, Paper
from arxiv_digest.select import dedup, matches_any, select
from arxiv_digest.window import day_containing, window_for

WINDOW = window_for(date(2026, 1, 15), "Asia/Shanghai", "08:50")
CATS = ("cs.SD", "eess.AS")


def paper(n: int, minutes: int = 60, version: int = 1, cats: tuple[str, ...] = ("cs.SD",), **kw: object) -> Paper:
    when = WINDOW.start + timedelta(minutes=minutes)
    return Paper(
        arxiv_id=f"2601.{n:05d}",
        version=version,
        entry_id=f"http://arxiv.org/abs/2601.{n:05d}v{version}",
        title=kw.pop("title", f"Paper {n}"),
        summary=kw.pop("summary", "An abstract."),
        authors=(Author("A"),),
        published=when.astimezone(UTC),
        updated=when.astimezone(UTC),
        primary_category=cats[0],
        categories=cats,
        abs_url=f"https://arxiv.org/abs/2601.{n:05d}v{version}",
        pdf_url=f"https://arxiv.org/pdf/2601.{n:05d}v{version}",
    )


def test_dedup_keeps_latest_version() -> None:
    assert [p.version for p in dedup([paper(1), paper(1, version=3), paper(1, version=2)])] == [3]


def test_window_bounds_are_half_open() -> None:
    inside = paper(1, minutes=0)
    outside = paper(2, minutes=24 * 60)
    chosen = select([inside, outside], WINDOW, CATS, FilterConfig())
    assert [p.arxiv_id for p in chosen.shown] == [inside.arxiv_id] and chosen.fetched == 1


def test_order_is_newest_submission_first() -> None:
    chosen = select([paper(1, 10), paper(2, 30), paper(3, 20)], WINDOW, CATS, FilterConfig())
    assert [p.arxiv_id[-1] for p in chosen.shown] == ["2", "3", "1"]


def test_category_filters() -> None:
    cross = paper(1, cats=("cs.CL", "eess.AS"))
    other = paper(2, cats=("cs.CL",))
    assert len(select([cross, other], WINDOW, CATS, FilterConfig()).shown) == 1
    assert select([cross], WINDOW, CATS, FilterConfig(primary_only=True)).shown == ()


def test_keywords_are_whole_words_or_phrases_any_case() -> None:
    assert matches_any("Speech Enhancement with codecs", ["speech   enhancement"])
    assert not matches_any("speechless", ["speech"])
    assert matches_any("Text-to-Speech (TTS) works", ["tts"])
    papers = [
        paper(1, title="Music tagging"),
        paper(2, title="Speech coding"),
        paper(3, summary="about MUSIC."),
    ]
    rules = FilterConfig(include_keywords=("music",), exclude_keywords=("tagging",))
    assert [p.arxiv_id[-1] for p in select(papers, WINDOW, CATS, rules).shown] == ["3"]


def test_cap_counts_what_it_left_out() -> None:
    chosen = select([paper(n, n) for n in range(1, 6)], WINDOW, CATS, FilterConfig(max_papers=2))
    assert len(chosen.shown) == 2 and chosen.left_out_by_cap == 3 and chosen.fetched == 5


def test_papers_shown_elsewhere_or_here_are_respected() -> None:
    papers = [paper(1, title="music"), paper(2, title="speech")]
    rules = FilterConfig(include_keywords=("speech",))
    chosen = select(papers, WINDOW, CATS, rules, shown_elsewhere=["2601.00002"], shown_here=["2601.00001"])
    assert [p.arxiv_id for p in chosen.shown] == ["2601.00001"]  # pinned stays even though filters changed


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(-3000, 6000), st.integers(1, 3)), max_size=40))
def test_each_paper_lands_in_exactly_one_post(specs: list[tuple[int, int, int]]) -> None:
    papers = [paper(n, minutes, version) for n, minutes, version in specs]
    days = {day_containing(p.published, "Asia/Shanghai", "08:50") for p in papers}
    shown: list[str] = []
    for day in sorted(days):
        window = window_for(day, "Asia/Shanghai", "08:50")
        shown += [p.arxiv_id for p in select(papers, window, CATS, FilterConfig(), shown_elsewhere=shown).shown]
    assert sorted(shown) == sorted({p.arxiv_id for p in dedup(papers)})
