"""search.js in a real browser (headless Chromium) on the search page of a site built by
``build_site``: an English phrase, an author's surname, a Chinese word and a word being typed each
show the right papers first, with highlighted snippets, within the budget of requests (counted at
the server), and search.js ranks and downloads exactly what its Python mirror (``search_query``)
does: the same files, so the mirror's byte and round figures hold for the browser."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urljoin

import lxml.html
import pytest

from arxiv_digest.search_query import Searcher, folder_fetch
from arxiv_digest.site import SiteOptions, build_site

from .site_support import write_posts
from .support.browser import CHROMIUM, Browser

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (Debian: apt-get install -y chromium)"
)


class _Site:
    """The built site served over loopback, with a log of the search files requested; ``encoded``
    sends the gzip files as ``Content-Encoding: gzip``, as some servers do for ``.gz``."""

    def __init__(self, root: Path, encoded: bool = False) -> None:
        self.requested: list[str] = []
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                site.requested.append(unquote(self.path.split("?")[0]))

            def end_headers(self) -> None:
                if encoded and self.path.split("?")[0].endswith(".gz"):
                    self.send_header("Content-Encoding", "gzip")
                super().end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def search_files(self) -> list[str]:
        return [p.removeprefix("/search/") for p in self.requested if p.startswith("/search/")]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Site, Searcher, Path]]:
    folder = tmp_path_factory.mktemp("search-browser")
    write_posts(folder / "posts")
    build_site(SiteOptions(folder / "posts", folder / "site"))
    site = _Site(folder / "site")
    try:
        yield site, Searcher(folder_fetch(folder / "site" / "search")), folder
    finally:
        site.server.shutdown()


def search_page(site: _Site, query: str, browser: Browser) -> tuple[list[str], str, lxml.html.HtmlElement]:
    site.requested.clear()
    dom = browser.dom(f"{site.url}/search.html?q={quote(query)}")
    results = dom.get_element_by_id("search-results")
    return [a.get("href") for a in results.find_class("result-title")], dom.get_element_by_id("search-status").text, dom


@pytest.mark.parametrize(
    ("query", "first_title", "marked"),
    [
        (
            '"speech enhancement"',
            "Modeling strategies for speech enhancement in the latent space of a neural audio codec",
            "speech",
        ),
        (
            "Hinrichs",
            "Analysis of the Maximum Prediction Gain of Short-Term Prediction on Sustained Speech",
            "Hinrichs",
        ),
        ("鼓点", "Towards Realistic Synthetic Data for Automatic Drum Transcription", "鼓点"),
        ("piano timb", "Research on Piano Timbre Transformation System Based on Diffusion Model", "Timb"),
    ],
)
def test_search_js_finds_what_its_mirror_finds(
    served: tuple[_Site, Searcher, Path], browser: Browser, query: str, first_title: str, marked: str
) -> None:
    site, mirror, _ = served
    links, status, dom = search_page(site, query, browser)
    expected = mirror.search(query)
    assert links == [urljoin(f"{site.url}/search/", f"../{record['u']}") for record in expected.records]
    assert status.startswith(f"找到 {expected.count} 篇论文")
    first = dom.get_element_by_id("search-results").find_class("result-title")[0]
    assert first.text_content() == first_title
    assert marked in {m.text for m in dom.get_element_by_id("search-results").iter("mark")}
    # the same files, hence the same bytes; and within the budget: 4 rounds, a few dozen requests
    assert sorted(site.search_files()) == sorted(p for round_ in expected.fetched for p in round_)
    assert expected.rounds <= 4 and len(site.search_files()) <= 30


def test_results_show_as_text_and_link_to_the_paper(served: tuple[_Site, Searcher, Path], browser: Browser) -> None:
    site, _, _ = served
    links, _, dom = search_page(site, "attack", browser)
    titles = [a.text_content() for a in dom.get_element_by_id("search-results").find_class("result-title")]
    assert any(title.startswith("Attack <script>") for title in titles)  # as text, and it did not run
    assert dom.find(".//title").text == "搜索 · arXiv Daily"
    assert all(re.search(r"\.html(#[\w-]+)?$", link) for link in links)  # a post without papers is one result
    assert (
        links[titles.index(next(t for t in titles if t.startswith("Attack <script>")))]
        .split("#")[1]
        .startswith("attack-script")
    )


def test_a_query_with_no_match_says_so(served: tuple[_Site, Searcher, Path], browser: Browser) -> None:
    site, _, _ = served
    links, status, _ = search_page(site, "zyxwvut", browser)
    assert links == [] and status == "没有找到匹配的论文。"


def test_a_server_that_sends_the_files_gzip_encoded_works_too(
    served: tuple[_Site, Searcher, Path], browser: Browser
) -> None:
    _, mirror, folder = served
    site = _Site(folder / "site", encoded=True)
    try:
        links, status, _ = search_page(site, "鼓点", browser)
    finally:
        site.server.shutdown()
    expected = mirror.search("鼓点")
    assert links == [urljoin(f"{site.url}/search/", f"../{record['u']}") for record in expected.records]
    assert status.startswith(f"找到 {expected.count} 篇论文")
