"""Six weeks of nightly runs under arXiv's real announcement schedule: nothing lost, nothing twice.

Papers become visible only at their announcement (20:00 US Eastern, Sunday to Thursday, for
submissions up to the 14:00 cutoff of each business day), across the switch from EDT to EST,
a holiday (Thanksgiving) and one paper held three days in moderation. The real CLI runs (in this
process) at 08:50 and 10:30 CST every day, except one missed night. Afterwards every post must equal
what a fresh `generate` of the same dates produces, apart from the list of late additions at the end.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from arxiv_digest.window import window_for

from .support.arxiv_server import make_paper
from .support.workspace import Workspace

EASTERN = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
HOLIDAYS = {date(2025, 11, 27)}
FIRST, LAST = date(2025, 10, 20), date(2025, 11, 30)
MISSED = date(2025, 11, 5)
HELD = "2511.00041"


def business(day: date) -> bool:
    return day.weekday() < 5 and day not in HOLIDAYS


def announced_at(submitted: datetime) -> datetime:
    """The 20:00 ET announcement that first lists a paper submitted at ``submitted``."""
    day = submitted.astimezone(EASTERN).date()
    while not (business(day) and submitted < datetime.combine(day, time(14), EASTERN)):
        day += timedelta(days=1)
    while day.weekday() in (4, 5) or day in HOLIDAYS:  # no announcements Friday/Saturday or on holidays
        day += timedelta(days=1)
    return datetime.combine(day, time(20), EASTERN).astimezone(UTC)


def simulated_papers() -> list:
    start = window_for(FIRST, "Asia/Shanghai", "08:50").start
    end = window_for(LAST, "Asia/Shanghai", "08:50").end
    papers, moment, n = [], start, 0
    while moment < end:
        n += 1
        arxiv_id = f"25{10 + n // 600:02d}.{n:05d}" if n != 41 else HELD
        categories = [["cs.SD"], ["eess.AS", "cs.SD"], ["cs.CL"], ["eess.AS"]][n % 4]
        paper = make_paper(arxiv_id, moment, title=f"Simulated paper {n}", categories=categories)
        paper.announced = announced_at(moment) + (timedelta(days=3) if arxiv_id == HELD else timedelta())
        papers.append(paper)
        moment += timedelta(minutes=97 + (n * 37) % 60)
    return papers


def body(text: str) -> str:
    return text.split("\n## 补录：此前窗口新增的论文\n")[0]


@pytest.mark.slow
def test_six_weeks_of_nightly_runs_lose_nothing(workspace: Workspace, tmp_path) -> None:
    papers = simulated_papers()
    workspace.arxiv.papers.extend(papers)
    workspace.configure(window={"refresh_days": 7})
    day = FIRST
    while day <= LAST + timedelta(days=5):
        if day != MISSED:
            for clock in (time(8, 50), time(10, 30)):
                now = datetime.combine(day, clock, SHANGHAI).astimezone(UTC)
                workspace.arxiv.set_now(now)
                result = workspace.cli("-q", "run", now=now.isoformat())
                assert result.returncode == 0, (day, clock, result.stderr)
        day += timedelta(days=1)

    wanted = {p.arxiv_id for p in papers if {"cs.SD", "eess.AS"} & set(p.categories)}
    shown: list[str] = []
    nightly = {}
    for name in workspace.posts():
        text = workspace.post(name[:10]).read_text(encoding="utf-8")
        ids = re.findall(r"^- \*\*arXiv\*\*: \[https://arxiv\.org/abs/([\d.]+)v1\]", text, re.MULTILINE)
        shown_count = int(re.search(r"本页显示：(\d+) 篇", text)[1])
        assert shown_count == len(ids) == text.count("\n## Simulated paper ")  # counts match content
        shown += ids
        nightly[name] = body(text)
    assert len(shown) == len(set(shown))  # nobody twice
    assert set(shown) == wanted  # nobody lost, nothing outside the categories
    assert HELD in shown

    late_lists = [workspace.post(n[:10]).read_text(encoding="utf-8") for n in workspace.posts()]
    assert sum("## 补录" in text for text in late_lists) > 5  # late announcements really happened

    fresh = workspace.fresh(tmp_path / "fresh")
    result = fresh.cli("generate", "--from", FIRST.isoformat(), "--to", LAST.isoformat())
    assert result.returncode == 0, result.stderr
    assert sorted(nightly) == [n for n in fresh.posts()]
    for name, text in nightly.items():
        assert text == fresh.post(name[:10]).read_text(encoding="utf-8"), name
