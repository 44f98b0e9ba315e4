"""Read a reference post back into the ``Post`` the renderer takes (for golden tests)."""

from __future__ import annotations

import re
from datetime import UTC, date, timedelta
from pathlib import Path

from arxiv_digest.models import Author, Paper, Post, PostEntry, Texts
from arxiv_digest.window import window_for

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
BLOCK = re.compile(
    r"## (?P<title>[^\n]+)\n- \*\*Authors\*\*: (?P<authors>[^\n]+)\n- \*\*Categories\*\*: (?P<cats>[^\n]+)\n"
    r"- \*\*arXiv\*\*: \[(?P<abs>[^\]]+)\]\([^)]+\)\n- \*\*PDF\*\*: \[(?P<pdf>[^\]]+)\]\([^)]+\)\n\n"
    r"(?P<translation>.+?)\n\n(?:<details>\n<summary>详细解读</summary>\n\n<div markdown=\"1\">\n\n"
    r"(?P<explainer>.+?)\n</div>\n\n</details>\n\n)?---\n",
    re.DOTALL,
)


def reference_post(name: str) -> tuple[Post, str]:
    text = (REFERENCE / name).read_text(encoding="utf-8")
    day = date.fromisoformat(re.search(r"arXiv Daily – (\d{4}-\d{2}-\d{2})", text)[1])
    fetched = int(re.search(r"抓取总数：(\d+) 篇", text)[1])
    window = window_for(day, "Asia/Shanghai", "08:50")
    entries = []
    for n, match in enumerate(BLOCK.finditer(text)):
        abs_url = match["abs"]
        arxiv_id, version = re.search(r"abs/(.+)v(\d+)$", abs_url).groups()
        cats = tuple(match["cats"].split(", "))
        paper = Paper(
            arxiv_id=arxiv_id,
            version=int(version),
            entry_id=abs_url.replace("https://", "http://"),
            title=match["title"],
            summary="(English abstract)",
            authors=tuple(Author(name) for name in match["authors"].split(", ")),
            published=(window.end - timedelta(minutes=10 * (n + 1))).astimezone(UTC),
            updated=(window.end - timedelta(minutes=10 * (n + 1))).astimezone(UTC),
            primary_category=cats[0],
            categories=cats,
            abs_url=abs_url,
            pdf_url=match["pdf"],
        )
        entries.append(PostEntry(paper, Texts(translation=match["translation"], explainer=match["explainer"])))
    post = Post(
        window=window,
        timezone="Asia/Shanghai",
        timezone_label="CST，北京时间",
        timezone_short="CST",
        anchor="08:50",
        tags=("cs.SD", "eess.AS"),
        fetched=fetched,
        entries=tuple(entries),
    )
    return post, text
