"""Per-paper pages: golden test against the reference page, and the LLM's page answers validated."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime

import pytest
import yaml

from arxiv_digest import render
from arxiv_digest.models import Author, PageInfo, Paper, PaperPage
from arxiv_digest.summarize import InvalidAnswer, check_page

from .reference_posts import REFERENCE

TAXONOMY = ("LLM应用", "Agent", "RAG", "LLM理论", "其他")


def reference_page() -> tuple[PaperPage, str]:
    text = (REFERENCE / "paper-page-2501.11999.md").read_text(encoding="utf-8")
    match = re.match(
        r"# (?P<title>.+)\n\n发布时间：(?P<y>\d{4})年(?P<m>\d\d)月(?P<d>\d\d)日\n\n"
        r"`(?P<cls>.+)\n\n理由：(?P<reason>.+)`"
        r"(?P<tags>(?: `[^`]+`)+)\n\n> (?P<en_title>.+)\n\n# 摘要\n\n> (?P<zh>.+)\n\n> (?P<en>.+)\n\n\[Arxiv\]",
        text,
    )
    assert match
    when = datetime(int(match["y"]), int(match["m"]), int(match["d"]), 3, tzinfo=UTC)
    paper = Paper(
        arxiv_id="2501.11999",
        version=1,
        entry_id="http://arxiv.org/abs/2501.11999v1",
        title=match["en_title"],
        summary=match["en"],
        authors=(Author("A"),),
        published=when,
        updated=when,
        primary_category="cs.SD",
        categories=("cs.SD",),
        abs_url="https://arxiv.org/abs/2501.11999v1",
        pdf_url="https://arxiv.org/pdf/2501.11999v1",
    )
    info = PageInfo(match["title"], match["cls"], match["reason"], tuple(re.findall(r"`([^`]+)`", match["tags"])))
    return PaperPage(paper, when.date(), match["zh"], info, "/papers/2501.11999/"), text


def test_reference_page_comes_back_byte_for_byte_below_the_front_matter() -> None:
    page, expected = reference_page()
    text = render.render_page(page, render.environment())
    front, below = text.split("---\n", 2)[1:]
    assert below == expected
    meta = yaml.safe_load(front)
    assert meta["permalink"] == "/papers/2501.11999/" and meta["categories"] == ["其他"]
    assert meta["tags"] == ["语音处理"] and meta["date"] == date(2025, 1, 21)


def test_hostile_page_values_stay_inert() -> None:
    page, _ = reference_page()
    info = PageInfo('标题 {{ site }} <script>x</script> "q"', "其他", "理由`含反引号` {% raw %}", ("标签`", "{{ t }}"))
    text = render.render_page(
        PaperPage(page.paper, page.day, "译文\n\n第二段 <b>", info, page.permalink), render.environment()
    )
    assert yaml.safe_load(text.split("---\n")[1])["title"] == '标题 {{ site }} ＜script＞x＜/script＞ "q"'
    body = text.split("---\n", 2)[2]  # Jekyll runs Liquid on the body only
    assert "<script>" not in text and "<b>" not in text and "> 第二段" in body
    assert "{{" not in body.replace("{% raw %}{{% endraw %}", "")


def answer(**fields: object) -> str:
    base = {
        "title": "速率感知的学习型语音压缩",
        "class": "其他",
        "reason": "这篇论文研究语音压缩，与大语言模型无关，因此归入其他。",
        "tags": ["语音处理", "神经编解码"],
    }
    return json.dumps(base | fields, ensure_ascii=False)


def paper() -> Paper:
    return reference_page()[0].paper


def test_a_valid_page_answer_is_accepted_even_inside_a_fence() -> None:
    info = check_page(f"```json\n{answer()}\n```", paper(), TAXONOMY)
    assert info == PageInfo(
        "速率感知的学习型语音压缩",
        "其他",
        "这篇论文研究语音压缩，与大语言模型无关，因此归入其他。",
        ("语音处理", "神经编解码"),
    )


@pytest.mark.parametrize(
    "bad, message",
    [
        (answer(**{"class": "语音合成"}), "类别"),
        (answer(tags=[]), "标签"),
        (answer(tags=["a" * 30, "b"]), "标签"),
        (answer(title="Rate-Aware Learned Speech Compression"), "标题"),
        (answer(reason="Because it is about compression."), "理由"),
        ("not json at all", "JSON"),
    ],
    ids=["out-of-taxonomy", "empty-tags", "long-tag", "untranslated-title", "english-reason", "not-json"],
)
def test_invalid_page_answers_are_rejected_with_a_reason(bad: str, message: str) -> None:
    with pytest.raises(InvalidAnswer, match=message):
        check_page(bad, paper(), TAXONOMY)


def add_paper(ws) -> None:
    from .support.arxiv_server import make_paper

    ws.arxiv.papers.append(make_paper("2601.00007", datetime(2026, 1, 14, 3, 0, tzinfo=UTC), title="Rate-Aware Codec"))


@pytest.mark.parametrize(
    "first_answer",
    [answer(**{"class": "LLM应用"}), answer(tags=[]), answer(title="Rate-Aware Codec")],
    ids=["out-of-taxonomy", "empty-tags", "untranslated-title"],
)
def test_pages_are_written_linked_and_corrected_through_the_llm(llm_ws, first_answer: str) -> None:
    llm_ws.script.bad["page"] = [first_answer]
    llm_ws.ws.configure(pages={"enabled": True, "taxonomy": ["语音识别", "语音合成", "音乐", "音频理解", "其他"]})
    add_paper(llm_ws.ws)
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    page = llm_ws.ws.root / "posts" / "2026-01-14-2601.00007.md"
    text = page.read_text(encoding="utf-8")
    assert text.split("---\n", 2)[2].startswith(
        "# 速率感知的学习型语音压缩\n\n发布时间：2026年01月14日\n\n`其他\n\n理由："
    )
    assert "`语音处理` `神经编解码`" in text and "> Rate-Aware Codec" in text
    daily = llm_ws.text()
    assert "- **中文页面**: [速率感知的学习型语音压缩](/papers/2601.00007/)" in daily
    corrections = [r for r in llm_ws.llm.requests if r.json and len(r.json["messages"]) == 4]
    assert len(corrections) == 1 and "不符合要求" in corrections[0].json["messages"][-1]["content"]
    again = llm_ws.generate()
    assert again.returncode == 0 and "LLM 0 calls, 3 cached" in again.stdout


def test_pages_stay_off_by_default(llm_ws) -> None:
    add_paper(llm_ws.ws)
    assert llm_ws.generate().returncode == 0
    assert llm_ws.ws.posts() == ["2026-01-15-arxiv.md"] and "中文页面" not in llm_ws.text()
    assert not list((llm_ws.ws.root / "posts").glob("*2601.00007.md"))
