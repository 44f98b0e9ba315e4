"""The post as data: records beside the posts, the reader of the reference format, the rewrite guard
judged by records, and a user's own post template that changes nothing for the site."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from arxiv_digest import postformat, render
from arxiv_digest.models import Texts
from arxiv_digest.postformat import PENDING_LINE, UNAVAILABLE_LINE, PostRecord

from .conftest import LLMWorkspace
from .llm_script import GOOD_EXPLAINER
from .reference_posts import reference_post
from .site_support import parse, search, text
from .support.arxiv_server import make_paper
from .test_pages import reference_page

DAY = "2026-01-15"
START = datetime(2026, 1, 14, 1, 0, tzinfo=UTC)


def split(text: str, name: str) -> tuple[dict, str]:
    front, start = postformat.front_matter(text, name)
    return front, postformat.apply_liquid_raw(text[start:])


def read_markdown(text: str, name: str = "2026-01-15-arxiv") -> PostRecord:
    front, body = split(text, name)
    return postformat.parse_post(body, front, name)


# -- the reader and the records agree -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["daily-post-2026-01-15.md", "daily-post-2025-10-31.md"])
def test_the_reference_posts_read_as_the_pipeline_records_them(name: str) -> None:
    post, expected = reference_post(name)
    env = render.environment()
    assert render.render_post(post, env) == expected
    recorded = postformat.post_record(post, expected, env)
    read = read_markdown(expected, name.removesuffix(".md"))
    assert read.quality == recorded.quality == (len(post.entries),) * 3
    assert (read.title, read.tags, read.fetched, read.shown) == (
        recorded.title,
        recorded.tags,
        post.fetched,
        post.fetched,
    )
    # a translated paper's post does not show its English abstract; everything else is the same
    assert read.papers == tuple(replace(paper, abstract=None) for paper in recorded.papers)
    assert recorded.papers[0].authors == tuple(a.name for a in post.entries[0].paper.authors)


def test_untranslated_papers_are_read_with_their_english_abstract() -> None:
    post, _ = reference_post("daily-post-2025-10-31.md")
    first, second = post.entries
    untranslated = (replace(first, texts=Texts()), replace(second, texts=Texts(unavailable=True)))
    post = replace(post, entries=untranslated)
    env = render.environment()
    text = render.render_post(post, env)
    assert PENDING_LINE in text and UNAVAILABLE_LINE in text
    read, recorded = read_markdown(text), postformat.post_record(post, text, env)
    assert read.quality == recorded.quality == (2, 0, 0)
    assert read.papers == recorded.papers
    assert read.papers[0].abstract == "(English abstract)" and PENDING_LINE not in read.papers[0].abstract


def test_model_headings_and_lists_in_the_texts_are_no_papers() -> None:
    post, _ = reference_post("daily-post-2025-10-31.md")
    entry = post.entries[0]
    texts = Texts(
        "本文研究语音。\n\n## 方法\n\n我们提出新方法。\n\n## 实验\n\n- 结果一\n- 结果二",
        "## 背景\n\n" + GOOD_EXPLAINER.replace("2)  \n", "2)  \n## 方法\n\n"),
    )
    post = replace(post, entries=(replace(entry, texts=texts), post.entries[1]))
    text = render.render_post(post, render.environment())
    read = read_markdown(text)
    assert read.quality == (2, 2, 2)
    assert "我们提出新方法。" in read.papers[0].translation and "结果二" in read.papers[0].translation
    assert "## 方法" in read.papers[0].explainer and read.papers[0].explainer.endswith("性能与更大的模型相当。")


def test_a_record_is_used_while_it_describes_its_file(tmp_path: Path) -> None:
    post, text = reference_post("daily-post-2026-01-15.md")
    env = render.environment()
    record = postformat.post_record(post, text, env)
    path = tmp_path / "2026-01-15-arxiv.md"
    postformat.write(path, text, record)
    assert postformat.sidecar_path(path).name == ".2026-01-15-arxiv.md.json"
    assert postformat.read(path).record == record  # from the sidecar: the English abstracts are there
    mtime = postformat.sidecar_path(path).stat().st_mtime_ns
    postformat.write(path, text, record)
    assert postformat.sidecar_path(path).stat().st_mtime_ns == mtime  # nothing rewritten

    path.write_text(text.replace("## Towards Realistic", "## Towards More Realistic"), encoding="utf-8")
    edited = postformat.read(path).record
    assert edited != record and edited.papers[1].title.startswith("Towards More Realistic")  # read from Markdown
    assert edited.papers[1].abstract is None

    postformat.sidecar_path(path).write_text('{"format": 1, "kind": "post", "sha256": "x"', encoding="utf-8")
    assert postformat.read(path).record.quality == (8, 8, 8)  # a broken sidecar is ignored


def test_the_reference_paper_page_reads_as_the_pipeline_records_it() -> None:
    page, _ = reference_page()
    env = render.environment()
    text = render.render_page(page, env)
    recorded = postformat.page_record(page, env)
    front, body = split(text, "2025-01-21-2501.11999")
    assert postformat.parse_page(body, front, "2025-01-21-2501.11999") == recorded
    assert recorded.reason.startswith("这篇论文主要讨论的是语音压缩技术") and recorded.tags == ("语音处理",)


def test_a_hand_written_page_keeps_what_the_layout_does_not_know() -> None:
    front = {"title": "手写", "date": "2026-01-01", "categories": "音乐", "arxiv_id": 2601.1001}
    record = postformat.parse_page("# 手写\n\n随便写点 **粗体**。\n\n`代码` 在前\n", front, "2026-01-01-2601.10010")
    assert record.arxiv_id == "2601.10010" and record.category == "音乐"
    assert record.other == "随便写点 **粗体**。\n\n`代码` 在前" and record.reason is None


# -- end to end: the guard and a user's own template ---------------------------------------------------

CUSTOM_POST = """\
---
layout: post
title: {{ ("Papers of " ~ post.window.day.isoformat()) | yaml_str }}
tags: {{ (["arxiv"] + post.tags | list) | yaml_list }}
---

{{ post.entries | length }} new papers.

{% for entry in post.entries %}
## {{ entry.paper.title | md(heading=True) }}

{% if entry.texts.translation %}
{{ entry.texts.translation | md_block }}
{% else %}
{{ entry.paper.summary | md }}

*Not translated yet.*
{% endif %}

- **Links**: [abstract]({{ entry.paper.abs_url | url }}), [pdf]({{ entry.paper.pdf_url | url }})
- **Fields**: {{ entry.paper.categories | join(", ") | md }}
- **Written by**: {{ entry.paper.authors | map(attribute="name") | join(", ") | md }}
- **Submitted**: {{ entry.paper.published.date().isoformat() }}
{% if entry.texts.explainer %}

<details>
<summary>Explained</summary>

<div markdown="1">

{{ entry.texts.explainer | md_block }}
</div>

</details>
{% endif %}

{% endfor %}
"""

PAPERS = (  # id, title, authors, categories
    ("2601.00001", "Codec Language Models", ["Ada Lovelace", "Zoë Quux"], ["cs.SD", "eess.AS"]),
    ("2601.00002", "Music Transcription at Scale", ["Alan Turing"], ["cs.SD", "cs.LG"]),
    ("2601.00003", "Speech Enhancement", ["Grace Hopper", "Edsger Dijkstra"], ["eess.AS"]),
)


def add(ws, arxiv_id: str, title: str, authors: list[str], categories: list[str], minute: int) -> None:
    published = START + timedelta(minutes=minute)
    ws.arxiv.papers.append(make_paper(arxiv_id, published, title=title, authors=authors, categories=categories))


def build_site(llm_ws: LLMWorkspace, *args: str) -> Path:
    done = llm_ws.ws.cli("site", *args)
    assert done.returncode == 0, done.stderr
    return llm_ws.ws.root / "_site"


def test_a_custom_post_template_keeps_search_listings_feeds_and_the_guard(llm_ws: LLMWorkspace) -> None:
    ws = llm_ws.ws
    (ws.root / "templates").mkdir()
    (ws.root / "templates" / "post.md.j2").write_text(CUSTOM_POST, encoding="utf-8")
    for minute, paper in enumerate(PAPERS):
        add(ws, *paper, minute)
    assert llm_ws.generate().returncode == 0
    written = llm_ws.text()
    assert "Written by" in written and "Authors" not in written and "详细解读" not in written
    assert read_markdown(written).quality == (0, 0, 0)  # not the reference format: the record carries it
    assert postformat.read(ws.post(DAY)).record.quality == (3, 3, 3)

    site = build_site(llm_ws)
    post = parse(site / "2026/01/15/arxiv.html")
    anchors = {h.text_content(): h.get("id") for h in post.find_class("post-body")[0].iter("h2")}
    assert set(anchors) == {title for _, title, _, _ in PAPERS}
    assert "3 篇论文" in text(post.find_class("meta")[0])
    newest_first = [title for _, title, _, _ in reversed(PAPERS)]
    assert [a.get("href") for a in post.find_class("toc")[0].iter("a")] == [f"#{anchors[t]}" for t in newest_first]

    # search: each paper on its own, by author, title and Chinese text, linked to its heading
    for _, title, authors, _ in PAPERS:
        assert search(site, authors[0]) == [(f"2026/01/15/arxiv.html#{anchors[title]}", title)]
    assert search(site, "Zoe Quux")[0][1] == "Codec Language Models"  # accents folded
    assert len(search(site, "个字符长的标题")) == 3

    # category listings and counts
    overview = {a.text: text(a.getparent()) for a in parse(site / "categories/index.html").iter("a") if a.text}
    assert "2 篇 · 1 期" in overview["cs.SD"] and "2 篇 · 1 期" in overview["eess.AS"]
    assert "1 篇 · 1 期" in overview["cs.LG"]
    listed = parse(site / "categories/cs.LG/index.html").find_class("paper-list")[0]
    assert [(a.text, a.get("href")) for a in listed.iter("a")] == [
        ("Music Transcription at Scale", f"../../2026/01/15/arxiv.html#{anchors['Music Transcription at Scale']}")
    ]

    # per-category feeds: one entry per paper, from its record
    feed = feedparser.parse((site / "categories/eess.AS/feed.xml").read_bytes())
    assert [e.title for e in feed.entries] == ["Speech Enhancement", "Codec Language Models"]
    content = feed.entries[0].content[0].value
    assert "Grace Hopper, Edsger Dijkstra" in content and "个字符长的标题" in content and "研究背景" in content
    assert 'href="https://arxiv.org/abs/2601.00003v1"' in content and "<details>" in content
    assert feed.entries[0].link.endswith(f"/2026/01/15/arxiv.html#{anchors['Speech Enhancement']}")

    # the guard: the store lost (an expired Actions cache) and the LLM off gives a worse post, refused
    shutil.rmtree(ws.root / "state")
    ws.configure(llm={"provider": "none"})
    worse = llm_ws.generate()
    assert worse.returncode == 0 and "kept existing better post" in worse.stdout
    assert llm_ws.text() == written
    # a better one (a fourth paper, all texts) replaces it
    ws.configure(llm={"provider": "auto"})
    add(ws, "2601.00004", "Late Paper on Audio", ["Barbara Liskov"], ["cs.SD"], 30)
    better = llm_ws.generate(DAY, "--refetch")
    assert better.returncode == 0, better.stderr
    record = postformat.read(ws.post(DAY)).record
    assert record.quality == (4, 4, 4) and "Late Paper on Audio" in llm_ws.text()
    site = build_site(llm_ws)
    assert search(site, "Barbara Liskov")[0][1] == "Late Paper on Audio"
    assert len(parse(site / "categories/cs.SD/index.html").find_class("paper-list")[0]) == 3
    # an incremental build follows the record: without it, this template's post shows no papers
    postformat.sidecar_path(ws.post(DAY)).unlink()
    site = build_site(llm_ws)
    assert not parse(site / "categories/cs.SD/index.html").find_class("paper-list")
    assert search(site, "Barbara Liskov") == [("2026/01/15/arxiv.html", "Papers of 2026-01-15")]  # the whole post


HEADINGS = {"unescaped": "## ", "escaped": "\\## "}


@pytest.mark.parametrize("kind", sorted(HEADINGS))
@pytest.mark.parametrize("sidecar", [True, False], ids=["with-record", "read-from-markdown"])
def test_model_headings_never_freeze_a_post(llm_ws: LLMWorkspace, kind: str, sidecar: bool) -> None:
    """Answers full of headings once made the post count as many papers, so every later post, with
    more papers, was refused as worse and the late papers never appeared."""
    heading = HEADINGS[kind]
    llm_ws.script.bad["translation"] = [
        f"本文研究语音编码。\n\n{heading}方法\n\n我们提出一种新方法。\n\n{heading}实验\n\n{heading}结论\n\n效果显著。"
    ]
    llm_ws.script.bad["explainer"] = [GOOD_EXPLAINER.replace("2)  \n", f"2)  \n{heading}方法概述\n\n")]
    add(llm_ws.ws, "2601.00001", "First Paper", ["Ada Lovelace"], ["cs.SD"], 0)
    assert llm_ws.generate().returncode == 0
    first = postformat.read(llm_ws.ws.post(DAY)).record
    assert first.quality == (1, 1, 1) and "我们提出一种新方法" in first.papers[0].translation
    if not sidecar:
        postformat.sidecar_path(llm_ws.ws.post(DAY)).unlink()
        assert postformat.read(llm_ws.ws.post(DAY)).record.quality == (1, 1, 1)

    add(llm_ws.ws, "2601.00002", "Second Paper", ["Alan Turing"], ["cs.SD"], 5)
    again = llm_ws.generate(DAY, "--refetch")
    assert again.returncode == 0 and "kept existing" not in again.stdout, again.stdout
    assert postformat.read(llm_ws.ws.post(DAY)).record.quality == (2, 2, 2)
    assert "Second Paper" in llm_ws.text()


def test_a_post_from_before_records_gets_its_record_on_the_next_run(llm_ws: LLMWorkspace) -> None:
    add(llm_ws.ws, "2601.00001", "First Paper", ["Ada Lovelace"], ["cs.SD"], 0)
    assert llm_ws.generate().returncode == 0
    sidecar = postformat.sidecar_path(llm_ws.ws.post(DAY))
    recorded = sidecar.read_text(encoding="utf-8")
    sidecar.unlink()
    assert "unchanged" in llm_ws.generate().stdout
    assert sidecar.read_text(encoding="utf-8") == recorded
