"""The served site in a real browser (headless Chromium): hostile posts and paper pages run nothing,
and the search page's JavaScript (on the index the site build writes) finds a paper by a
two-character Chinese word, and a paper page by its tag. The search test also proves that script
does run in this setup, so the absence of 'PWNED' in the other test means something."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from arxiv_digest.serve import ServeHandle, serve
from arxiv_digest.site import SiteOptions

from .site_support import PWNED, script_problems, text, write_posts
from .support.browser import CHROMIUM, Browser

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (Debian: apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeHandle]:
    folder = tmp_path_factory.mktemp("browser")
    write_posts(folder / "posts", pages=True)
    handle = serve(SiteOptions(folder / "posts", folder / "unused"), port=0)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.mark.parametrize(
    "path",
    [
        "/index.html",
        "/2026/01/12/arxiv.html",
        "/2026/01/10/raw.html",
        "/categories/cs.SD/index.html",
        "/papers/2601.00001/",
        "/tags/index.html",
        f"/tags/{quote('语音处理')}/index.html",
    ],
)
def test_hostile_posts_run_no_script_in_the_browser(served: ServeHandle, browser: Browser, path: str) -> None:
    dom = browser.dom(served.url + path)
    assert dom.find(".//title").text != "PWNED"  # what every payload would have set
    assert script_problems(dom, allowed_scripts=("/__livereload.js",)) == []
    if path == "/2026/01/12/arxiv.html":
        assert f"<script>{PWNED}</script>" in text(dom)  # shown, as text
    if path == "/2026/01/10/raw.html":
        assert dom.find(".//title").text == f'Raw <script>{PWNED}</script> "q" & more · arXiv Daily'
    if path == "/papers/2601.00001/":
        assert f'理由含 <img src=x onerror="{PWNED}">' in text(dom)


def test_search_page_finds_papers_by_a_chinese_word(served: ServeHandle, browser: Browser) -> None:
    dom = browser.dom(f"{served.url}/search.html?q={quote('量化')}")
    assert dom.get_element_by_id("search-status").text.startswith("找到")
    titles = [a.text_content() for a in dom.get_element_by_id("search-results").find_class("result-title")]
    assert "Linear Complexity Self-Supervised Learning for Music Understanding with Random Quantizer" in titles
    assert any(title.startswith("Attack <script>") for title in titles)  # as text, and it did not run
    assert dom.find(".//title").text == "搜索 · arXiv Daily"

    dom = browser.dom(f"{served.url}/search.html?q={quote('鼓点')}")
    results = dom.get_element_by_id("search-results").find_class("result-title")
    assert [a.text_content() for a in results] == ["Towards Realistic Synthetic Data for Automatic Drum Transcription"]
    assert results[0].get("href") == (
        f"{served.url}/2026/01/15/daily-post-2026-01-15.html"
        "#towards-realistic-synthetic-data-for-automatic-drum-transcription"
    )
    assert dom.get_element_by_id("search-results").find(".//mark").text == "鼓点"


def test_search_page_finds_paper_pages_by_tag(served: ServeHandle, browser: Browser) -> None:
    dom = browser.dom(f"{served.url}/search.html?q={quote('模型压缩')}")
    results = dom.get_element_by_id("search-results")
    item = next(li for li in results.iter("li") if "基于随机量化器" in text(li))  # its Chinese title, its page
    assert text(item.find_class("title-zh")[0]) == "基于随机量化器的线性复杂度音乐理解自监督学习"
    assert item.find_class("result-title")[0].get("href") == f"{served.url}/papers/2601.09603/index.html"
    meta = text(item.find_class("meta")[0])  # its id, class and tags
    assert "2601.09603" in meta and "音乐 · 音乐信息检索、自监督学习、模型压缩" in meta
    assert "模型压缩" in {m.text for m in item.iter("mark")}
