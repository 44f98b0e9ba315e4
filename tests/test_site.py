"""The HTML site: structure of the reference posts, inertness of hostile posts, Atom feeds, the search
index, incremental builds, templates, and per-paper pages with their class and tag pages (the preview
server is tested in test_serve.py)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date
from pathlib import Path
from urllib.parse import urljoin

import feedparser
import lxml.etree
import lxml.html
import pytest

from arxiv_digest.models import PageInfo
from arxiv_digest.postformat import apply_liquid_raw
from arxiv_digest.search_query import Searcher, folder_fetch
from arxiv_digest.site import BuildReport, SiteError, SiteOptions, build_site
from arxiv_digest.site.markdown import convert, relative_links
from arxiv_digest.site.options import state_folder

from .reference_posts import reference_post
from .site_support import (
    ALLOWED_BODY_TAGS,
    ATTACK_PAGE_TITLE,
    ATTACK_TITLE,
    AUTHORS,
    PAGES,
    PWNED,
    REFERENCE,
    REFERENCE_PAGE,
    REFERENCE_POSTS,
    body_tags,
    paper_page,
    parse,
    pipeline_post,
    reference_page,
    script_problems,
    search,
    text,
    write_posts,
)

ATOM = "{http://www.w3.org/2005/Atom}"
ATTACK_ANCHOR = "attack-scriptdocumenttitlepwnedscript-on-alpha1"
BASE = "https://example.org/digest"
REFERENCE_PAGE_URL = "papers/2501.11999/index.html"
MUSIC_PAGE_URL = "papers/2601.09603/index.html"
ATTACK_PAGE_URL = "papers/2601.00001/index.html"
PAGE_URLS = (REFERENCE_PAGE_URL, MUSIC_PAGE_URL, ATTACK_PAGE_URL)


def build(tmp_path: Path, **options: object) -> tuple[SiteOptions, BuildReport]:
    site_options = SiteOptions(tmp_path / "posts", tmp_path / "site", **options)  # type: ignore[arg-type]
    return site_options, build_site(site_options)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_posts(tmp_path / "posts")
    build(tmp_path, base_url="https://example.org/digest")
    return tmp_path / "site"


@pytest.fixture
def paper_site(tmp_path: Path) -> Path:
    """The posts of ``site``, three paper pages, and the hostile post linking its paper to its page."""
    write_posts(tmp_path / "posts", pages=True)
    _, report = build(tmp_path, base_url=BASE)
    assert (report.posts, report.pages) == (4, 3)
    return tmp_path / "site"


def links_resolve(site: Path, rel: str) -> None:
    """Every relative link, stylesheet and script of the page at ``rel`` names a file of the site."""
    folder = (site / rel).parent
    for link in parse(site / rel).iter("a", "link", "script"):
        target = link.get("href") or link.get("src") or ""
        if target and not target.startswith(("http", "#")):
            assert (folder / target.split("#")[0].split("?")[0]).resolve().is_file(), (rel, target)


# SHA-256 of the originals in the project's shared reference folder (which is not in this repository)
REFERENCE_DIGESTS = {
    "daily-post-2025-10-31.md": "b193203d691756727f58523fee54e823bbf12f867dae1a7195d80819a0b66e69",
    "daily-post-2026-01-15.md": "15d2eb3e59d9a89eed43abc9b39ec57da6632bfb7a1087fbcfea5fe6fbe4c413",
    "paper-page-2501.11999.md": "071e2f638f460434171933d6e3792272a345eaf50b8c46a3698b8d0caf32c303",
}


def test_fixture_posts_are_the_reference_posts() -> None:
    assert set(REFERENCE_DIGESTS) == {*REFERENCE_POSTS, REFERENCE_PAGE}
    for name, digest in REFERENCE_DIGESTS.items():
        assert hashlib.sha256((REFERENCE / name).read_bytes()).hexdigest() == digest, name


def test_reference_posts_and_page_build_with_their_papers_and_categories(tmp_path: Path) -> None:
    """The seed system's posts (no records beside them) are read by their Markdown: every paper is
    listed under each of its categories, counted, linked to its heading and found by search."""
    write_posts(tmp_path / "posts", hostile=False)
    (tmp_path / "posts" / "2025-01-21-2501.11999.md").write_text(reference_page(), encoding="utf-8")
    _, report = build(tmp_path)
    assert (report.posts, report.pages) == (2, 1)
    site = tmp_path / "site"
    expected: dict[str, list[str]] = {}
    for name in sorted(REFERENCE_POSTS, reverse=True):  # newest first, as the listings are
        post, _ = reference_post(name)  # an independent reading of the fixture
        page = parse(site / f"{post.window.day:%Y/%m/%d}/{name.removesuffix('.md')}.html")
        toc = [(a.text_content(), a.get("href")) for a in page.find_class("toc")[0].iter("a")]
        ids = [f"#{h.get('id')}" for h in page.find_class("post-body")[0].iter("h2")]
        assert toc == list(zip([e.paper.title for e in post.entries], ids, strict=True))
        assert f"{len(post.entries)} 篇论文" in text(page.find_class("meta")[0])
        for entry in post.entries:
            for category in entry.paper.categories:
                expected.setdefault(category, []).append(entry.paper.title)
            assert [title for _, title in search(site, entry.paper.arxiv_id)] == [entry.paper.title]
    overview = {a.text: text(a.getparent()) for a in parse(site / "categories/index.html").iter("a") if a.text}
    for category, titles in expected.items():
        listing = parse(site / f"categories/{category}/index.html")
        assert [a.text_content() for a in listing.iter("a") if "#" in (a.get("href") or "")] == titles
        assert overview[category].startswith(f"{category} {len(titles)} 篇")
    assert len(expected) == 7 and len(expected["cs.SD"]) == 10
    listed = parse(site / "classes/其他/index.html").find_class("paper-item-title")
    assert [(a.text, a.get("href")) for a in listed] == [("速率感知的智能语音压缩", f"../../{REFERENCE_PAGE_URL}")]


# -- conversion ------------------------------------------------------------------------------------


def test_reference_post_renders_like_kramdown(site: Path) -> None:
    page = parse(site / "2026/01/15/daily-post-2026-01-15.html")
    body = page.find_class("post-body")[0]
    headings = body.findall(".//h2")
    assert len(headings) == 8
    assert (
        headings[0].get("id")
        == "linear-complexity-self-supervised-learning-for-music-understanding-with-random-quantizer"
    )
    details = body.xpath(".//details[not(@class)]")
    assert len(details) == 8
    folded = body.find_class("more-authors")  # the one paper with 22 authors shows ten
    assert len(folded) == 1 and folded[0].find("summary").text == "等 22 位作者"
    for block in details:
        assert block[0].tag == "summary" and block[0].text_content() == "详细解读"
        div = block.find("div")
        assert div is not None and div.get("markdown") is None
        # kramdown: "1)" is a paragraph, not a list item, and the bullets under it are a real list
        numbered = [p.text_content()[:2] for p in div.findall("p") if p.text_content()[1:2] == ")"]
        assert numbered == ["1)", "2)", "3)"]
        assert div.findall("ol") == []
        assert div.find("ul/li/strong") is not None
    first = details[0].find("div")
    assert first.find("ul/li/strong").text == "研究背景"
    assert first.find("ul/li/ul/li/strong") is not None  # the nested list under 解决思路
    meta = headings[0].getnext()
    assert meta.tag == "ul" and meta.find("li/strong").text == "Authors"
    assert meta.find("li/a").get("href") == "https://arxiv.org/abs/2601.09603v1"
    toc = page.find_class("toc")[0]
    assert next(a.get("href") for a in toc.iter("a")) == f"#{headings[0].get('id')}"
    assert page.find(".//title").text == "arXiv Daily – 2026-01-15"


def test_post_page_links_categories_neighbours_and_works_from_any_folder(site: Path) -> None:
    page = parse(site / "2026/01/15/daily-post-2026-01-15.html")
    tags = [a.text for a in page.find_class("tag")]
    assert tags[:2] == ["cs.SD", "eess.AS"] and "cs.AI" in tags and "arxiv" not in tags
    nav = page.find_class("post-nav")[0]
    assert [a.get("href") for a in nav.iter("a")] == ["../../../2026/01/12/arxiv.html"]
    for link in page.iter("a", "link", "script"):
        target = link.get("href") or link.get("src") or ""
        if target and not target.startswith(("http", "#")):
            assert (site / "2026/01/15" / target.split("#")[0].split("?")[0]).resolve().is_file(), target


def test_maths_code_and_kramdown_rules() -> None:
    html = convert(
        "Title $a*b*c_1$ and $$x^2$$, `$not maths$`, $5 and $10, 2~6 dB, a &lt;b&gt; $x&lt;y$\n\n1) item\n"
    ).html
    tree = lxml.html.fragment_fromstring(html, create_parent="div")
    maths = [(m.get("display"), "".join(m.xpath(".//annotation//text()"))) for m in tree.iter("math")]
    assert maths == [("inline", "a*b*c_1"), ("block", "x^2"), ("inline", "x<y")]  # MathML, the TeX annotated
    assert '<span class="math display"><math' in html and "<msup><mi>x</mi><mn>2</mn></msup>" in html
    assert "<code>$not maths$</code>" in html
    assert "$5 and $10" in html and "<del>" not in html and "2~6" in html
    assert '<span class="math">$18% and 54$</span>' in convert("from $18% and 54$ of").html  # stays TeX
    assert "<p>1) item</p>" in html


def test_liquid_raw_semantics() -> None:
    assert apply_liquid_raw("{% raw %}{{{% endraw %} site }}") == "{{ site }}"
    assert apply_liquid_raw("{% raw %}{{% endraw %}% include x %}") == "{% include x %}"
    assert apply_liquid_raw("a {%- raw -%}{% raw %}{%endraw%} b") == "a {% raw %} b"
    assert apply_liquid_raw("{{ page.title }} stays text") == "{{ page.title }} stays text"
    with pytest.raises(ValueError, match="never closed"):
        apply_liquid_raw("{% raw %} open")


def test_unclosed_raw_tag_fails_the_build_naming_the_post(tmp_path: Path) -> None:
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "2026-01-01-x.md").write_text("---\ntitle: x\n---\n{% raw %} open\n", encoding="utf-8")
    with pytest.raises(SiteError, match=r"2026-01-01-x\.md.*never closed"):
        build(tmp_path)


# -- hostile posts -----------------------------------------------------------------------------------


def test_no_page_or_feed_can_run_a_posts_script(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 15
    for page in pages:
        allowed = ("static/search.js?",) if page.name == "search.html" else ()
        assert script_problems(parse(page), allowed) == [], page
    for post in ("2026/01/12/arxiv.html", "2026/01/10/raw.html"):
        assert body_tags(parse(site / post)) <= ALLOWED_BODY_TAGS
    for feed in site.rglob("*.xml"):
        for content in lxml.etree.parse(str(feed)).iter(f"{ATOM}content"):
            assert script_problems(lxml.html.fromstring(f"<div>{content.text}</div>")) == [], feed


def test_escaped_text_stays_visible_as_text(site: Path) -> None:
    page = parse(site / "2026/01/12/arxiv.html")
    words = text(page)
    assert f"Attack <script>{PWNED}</script> on $\\alpha_1$ & {{{{ site }}}} {{% include x %}}" in words
    assert "\"quoted\" 'single' C:\\path\\to" in words
    assert f'<script>{PWNED}</script> <img src=x onerror="{PWNED}">' in words
    assert "{{ site.title }} {% raw %} 反斜杠 \\ 与" in words
    assert "`<script>code span</script>`" not in words and "<script>code span</script>" in words
    maths = ["".join(m.xpath(".//annotation//text()")) for m in page.iter("math")]  # rendered as MathML
    assert "\\alpha_1" in maths and "x_{i}^{*} < y" in maths
    heading = page.xpath(f"//h2[starts-with(@id, '{ATTACK_ANCHOR}')]")[0]  # a title's maths, kramdown's anchor
    assert heading.find(".//math/semantics/mrow/msub/mi").text == "α"
    authors = page.xpath("//li[strong='Authors']")[0].text_content()
    assert "Zoë Ångström, 李雷, Jörn Ostermann, Łukasz Żółć, Nguyễn Văn An, Seán O'Brien" in authors
    assert authors.count(",") == len(AUTHORS) - 1 and f"等 {len(AUTHORS)} 位作者" in authors
    (record,) = Searcher(folder_fetch(site / "search")).search("Żółć Ostermann Ångström ").records
    assert record["a"] == list(AUTHORS[:3]) and record["n"] == len(AUTHORS)  # folding is for the page only


def test_raw_attacks_are_removed_and_front_matter_is_escaped(site: Path) -> None:
    page = parse(site / "2026/01/10/raw.html")
    assert page.find(".//h1").text == f'Raw <script>{PWNED}</script> "q" & more'
    assert page.find(".//title").text.startswith("Raw <script>")
    words = text(page)
    assert "{{ site.title }} {{ site }}" in words and "正文量化" in words
    assert [a.get("href") for a in page.find_class("post-body")[0].iter("a")][-1] is None  # javascript: dropped
    assert all(span.get("class") in ("math", "math display") for span in page.iter("span"))
    assert "<b>cs.XX</b>" in [a.text for a in page.find_class("tag")]
    assert (site / "categories").is_dir() and not any("<" in p.name for p in (site / "categories").iterdir())


# -- feeds and search ---------------------------------------------------------------------------------


def test_feeds_are_valid_atom_with_absolute_links(site: Path) -> None:
    feeds = [site / "feed.xml", *sorted((site / "categories").glob("*/feed.xml"))]
    assert len(feeds) > 5
    for path in feeds:
        root = lxml.etree.parse(str(path)).getroot()
        assert root.tag == f"{ATOM}feed"
        parsed = feedparser.parse(path.read_bytes())
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        for entry in root.iter(f"{ATOM}entry"):
            for child in ("id", "title", "updated", "link", "content"):
                assert entry.find(f"{ATOM}{child}") is not None
            assert entry.find(f"{ATOM}link").get("href").startswith("https://example.org/digest/")
    site_feed = feedparser.parse((site / "feed.xml").read_bytes())
    assert [e.title for e in site_feed.entries][:2] == ["arXiv Daily – 2026-01-15", "arXiv Daily – 2026-01-12"]
    assert "<details>" in site_feed.entries[0].content[0].value
    paper_feed = feedparser.parse((site / "categories/math.NA/feed.xml").read_bytes())
    assert paper_feed.entries[0].title.startswith(f"Attack <script>{PWNED}</script>")
    assert paper_feed.entries[0].link.startswith(f"https://example.org/digest/2026/01/12/arxiv.html#{ATTACK_ANCHOR}")


def test_search_index_finds_papers_by_chinese_word_author_and_title(site: Path) -> None:
    hits = search(site, "量化")
    titles = [title for _, title in hits]
    assert "Linear Complexity Self-Supervised Learning for Music Understanding with Random Quantizer" in titles
    assert any(title.startswith("Attack <script>") for title in titles)
    assert [url for url, _ in search(site, "鼓点")] == [
        "2026/01/15/daily-post-2026-01-15.html#towards-realistic-synthetic-data-for-automatic-drum-transcription"
    ]
    assert len(search(site, "Jorn Ostermann")) == 2  # accents folded; one reference paper, one hostile
    assert (
        search(site, "drum transcription")[0][1] == "Towards Realistic Synthetic Data for Automatic Drum Transcription"
    )
    assert search(site, "量化 不存在的词") == []


# -- incremental builds -------------------------------------------------------------------------------


def test_adding_a_post_rewrites_only_what_shows_it(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts")
    options, first = build(tmp_path, posts_per_listing=2)
    assert first.full and first.skipped == 0
    assert build_site(options).written == ()

    new = pipeline_post(date(2026, 1, 20), translation="全新的论文，研究量化。", arxiv_id="2601.99999")
    (tmp_path / "posts" / "2026-01-20-arxiv.md").write_text(new.replace("math.NA", "cs.NEW"), encoding="utf-8")
    report = build_site(options)
    written = set(report.written)
    index = {w for w in written if w.startswith("search/")}
    assert "search/meta.gz" in index and len(index) < len([w for w in first.written if w.startswith("search/")])
    assert written - index == {
        "2026/01/20/arxiv.html",
        "2026/01/15/daily-post-2026-01-15.html",  # its "newer" link now points at the new post
        "index.html",
        "page/2.html",  # 5 posts by 2: chunk 2 (posts 3-4 from the oldest) became a page of its own,
        "page/1.html",  # so chunk 1's "newer" link now points at it instead of the first page
        "archive/index.html",
        "archive/2026-01.html",
        "feed.xml",
        "categories/index.html",
        "categories/cs.SD/index.html",  # 5 posts now, like the index
        "categories/cs.SD/2.html",
        "categories/cs.SD/1.html",
        "categories/cs.SD/feed.xml",
        "categories/eess.AS/index.html",  # 4 posts: its chunk 1 still holds the same two, so stays
        "categories/eess.AS/feed.xml",
        "categories/cs.NEW/index.html",
        "categories/cs.NEW/feed.xml",
    }
    assert not report.full and report.skipped > 20
    assert "2026/01/12/arxiv.html" not in written and "categories/math.NA/index.html" not in written
    assert search(tmp_path / "site", "全新的论文")[0][0].startswith(f"2026/01/20/arxiv.html#{ATTACK_ANCHOR}")
    assert build_site(options).written == ()


def test_changing_and_removing_posts_keeps_the_site_consistent(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts")
    options, _ = build(tmp_path)
    post = tmp_path / "posts" / "2026-01-12-arxiv.md"
    post.write_text(
        post.read_text(encoding="utf-8").replace("这项研究关注量化方法", "这项研究关注蒸馏方法"), encoding="utf-8"
    )
    changed = build_site(options)
    assert "2026/01/12/arxiv.html" in changed.written and "search/meta.gz" in changed.written
    assert search(tmp_path / "site", "蒸馏方法") and not search(tmp_path / "site", "关注量化方法")

    post.unlink()
    removed = build_site(options)
    assert "2026/01/12/arxiv.html" in removed.removed and "categories/math.NA/index.html" in removed.removed
    assert not (tmp_path / "site/2026/01/12").exists()
    assert not search(tmp_path / "site", "蒸馏方法")
    nav = parse(tmp_path / "site/2026/01/15/daily-post-2026-01-15.html").find_class("post-nav")[0]
    assert [a.get("href") for a in nav.iter("a")] == ["../../../2026/01/10/raw.html"]


SEARCHES = (
    "量化",
    "鼓点",
    "drum transcription",
    '"speech enhancement"',
    "Ostermann",
    "蒸馏方法",
    "全新",
    "spe",
    "方法",
)


def _search_results(site: Path) -> dict[str, tuple[int, list[int], list[dict[str, object]]]]:
    searcher = Searcher(folder_fetch(site / "search"))
    return {q: (r.count, r.ids, r.records) for q in SEARCHES for r in [searcher.search(q, shown=100)]}


@pytest.mark.parametrize("pages", [False, True])
def test_an_incremental_build_searches_like_a_full_one(tmp_path: Path, pages: bool) -> None:
    write_posts(tmp_path / "posts", pages=pages)
    options, _ = build(tmp_path)
    posts = tmp_path / "posts"
    new = pipeline_post(date(2026, 1, 20), translation="全新的论文，研究量化。", arxiv_id="2601.99999")
    (posts / "2026-01-20-arxiv.md").write_text(new, encoding="utf-8")  # added
    changed = posts / "2026-01-12-arxiv.md"
    changed.write_text(changed.read_text(encoding="utf-8").replace("关注量化方法", "关注蒸馏方法"), encoding="utf-8")
    (posts / "2026-01-10-raw.md").unlink()  # removed
    if pages:
        (posts / "2026-01-15-2601.09603.md").unlink()  # a paper's page removed: its daily post's paper again
    assert not build_site(options).full
    incremental = _search_results(tmp_path / "site")
    full = build_site(replace(options, site_dir=tmp_path / "full"))
    assert full.full
    assert _search_results(tmp_path / "full") == incremental
    assert incremental["全新"][0] == 1 and incremental["蒸馏方法"][0] == 1 and incremental["量化"][0] >= 2


def test_a_template_change_rebuilds_what_shows_it_and_user_templates_win(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts")
    mine = tmp_path / "templates"
    mine.mkdir()
    options, _ = build(tmp_path, templates_dirs=(mine,))
    site = tmp_path / "site"
    html = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    posts = {name for name in html if name[:4].isdigit()}
    feeds = {p.relative_to(site).as_posix() for p in site.rglob("*.xml")}
    assert posts and feeds and html - posts

    (mine / "post.html").write_text(
        '{% extends "!default/post.html" %}{% block head %}<meta name="theme" content="mine">{% endblock %}',
        encoding="utf-8",
    )
    report = build_site(options)
    assert set(report.written) == posts  # only the posts show post.html
    page = parse(tmp_path / "site/2026/01/15/daily-post-2026-01-15.html")
    assert page.find(".//meta[@name='theme']").get("content") == "mine"
    assert page.find_class("post-body")  # the rest still comes from the packaged post.html

    (mine / "base.html").write_text('{% extends "!default/base.html" %}{% block head %}<!-- b -->{% endblock %}')
    report = build_site(options)
    assert set(report.written) == html  # every page shows base.html, no feed does, nor the search index
    assert "<!-- b -->" in (site / "index.html").read_text(encoding="utf-8")
    (mine / "base.html").unlink()
    build_site(options)
    (mine / "_macros.html").write_text('{% extends "!default/_macros.html" %}')  # listings and category feeds use it
    written = set(build_site(options).written)
    assert feeds - {"feed.xml"} <= written and "index.html" in written
    assert not written & posts and "feed.xml" not in written  # the site feed shows whole posts, no macro
    page = parse(tmp_path / "site/2026/01/15/daily-post-2026-01-15.html")
    assert page.find(".//meta[@name='theme']").get("content") == "mine"
    assert page.find_class("post-body")  # the rest still comes from the packaged post.html

    kept = state_folder(options) / "templates" / "references.json"  # what each template loads, kept
    assert "_macros.html" in kept.read_text(encoding="utf-8")
    kept.write_text('{"x": [1]', encoding="utf-8")  # unreadable: the templates are parsed again
    (mine / "_macros.html").unlink()
    written = set(build_site(options).written)
    assert feeds - {"feed.xml"} <= written and not written & posts

    (mine / "post.html").write_text("{% block main %}{{ post.title ", encoding="utf-8")
    with pytest.raises(SiteError, match=r"post.html:1"):
        build_site(options)
    (mine / "post.html").unlink()
    assert not build_site(options).full  # templates are compiled before anything is written


def test_templates_loaded_only_when_present_or_by_a_computed_name_still_decide_what_is_rebuilt(
    tmp_path: Path,
) -> None:
    write_posts(tmp_path / "posts")
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "post.html").write_text(
        '{% extends "!default/post.html" %}{% block head %}{% include "extra.html" ignore missing %}{% endblock %}',
        encoding="utf-8",
    )
    options, _ = build(tmp_path, templates_dirs=(mine,))  # extra.html does not exist yet: no error
    site = tmp_path / "site"
    posts = {
        p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.relative_to(site).as_posix()[:4].isdigit()
    }
    (mine / "extra.html").write_text('<meta name="extra" content="1">', encoding="utf-8")
    assert set(build_site(options).written) == posts
    assert 'name="extra"' in (site / "2026/01/15/daily-post-2026-01-15.html").read_text(encoding="utf-8")

    (mine / "index.html").write_text(
        '{% extends "!default/index.html" %}'
        '{% block head %}{% include site.title ~ ".html" ignore missing %}{% endblock %}',
        encoding="utf-8",
    )
    build_site(options)
    (mine / "unrelated.html").write_text("x", encoding="utf-8")  # loaded by no name: only a computed one might
    assert "index.html" in build_site(options).written


def test_build_refuses_two_posts_on_one_url(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts", hostile=False)
    (tmp_path / "posts" / "again.md").write_text(
        "---\ntitle: x\ndate: 2026-01-15\npermalink: /2026/01/15/daily-post-2026-01-15.html\n---\nx\n",
        encoding="utf-8",
    )
    with pytest.raises(SiteError, match=r"would both be written to 2026/01/15/daily-post-2026-01-15\.html"):
        build(tmp_path)


def test_files_without_front_matter_are_not_posts(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts", hostile=False)
    (tmp_path / "posts" / "README.md").write_text("# notes\n", encoding="utf-8")
    _, report = build(tmp_path)
    assert report.posts == 2


# -- per-paper pages -----------------------------------------------------------------------------------


def test_paper_page_is_rendered_at_its_permalink_with_all_its_parts(paper_site: Path) -> None:
    page = parse(paper_site / REFERENCE_PAGE_URL)
    assert page.find(".//h1").text == "速率感知的智能语音压缩"
    assert page.find(".//title").text == "速率感知的智能语音压缩 · arXiv Daily"
    assert page.find(".//time").get("datetime") == "2025-01-21"
    facts = page.find_class("paper-facts")[0]
    classes = facts.xpath("dt[.='类别']/following-sibling::dd[1]/a")
    assert [(a.text, a.get("href")) for a in classes] == [("其他", "../../classes/其他/index.html")]
    reason = page.find_class("paper-reason")[0].text_content()
    assert reason.startswith("理由：这篇论文主要讨论的是语音压缩技术") and reason.endswith("将其分类为“其他”更为合适。")
    tags = facts.xpath("dt[.='标签']/following-sibling::dd[1]/a")
    assert [(a.text, a.get("href")) for a in tags] == [("语音处理", "../../tags/语音处理/index.html")]
    assert page.find_class("paper-title-en")[0].text_content() == "Rate-Aware Learned Speech Compression"
    zh, en = page.find_class("abstract")
    assert zh.get("lang") == "zh-CN" and text(zh).startswith("摘要 实时通信和大型语言模型的迅猛发展")
    assert "平均节省53.51%的BD-Rate比特率" in text(zh) and "（1）量化器性能欠佳" in text(zh)
    assert en.get("lang") == "en" and text(en).startswith("Abstract The rapid rise of real-time communication")
    assert "https://arxiv.org/abs/2501.11999" in [a.get("href") for a in page.iter("a")]
    assert not page.find_class("paper-other")  # the body is in the paper-page layout: nothing left over
    assert page.xpath("//nav[@class='site-nav']/a[.='类别与标签']/@href") == ["../../classes/index.html"]
    for rel in PAGE_URLS:
        links_resolve(paper_site, rel)


def test_paper_pages_are_not_listed_as_daily_posts(paper_site: Path) -> None:
    titles = ["速率感知的智能语音压缩", "基于随机量化器的线性复杂度音乐理解自监督学习", "攻击"]
    listings = ["index.html", "archive/index.html", "archive/2026-01.html", "archive/2025-01.html"]
    listings += [p.relative_to(paper_site).as_posix() for p in (paper_site / "categories").rglob("*.html")]
    for rel in listings:
        if not (paper_site / rel).is_file():
            assert rel == "archive/2025-01.html"  # the reference paper page's month has no daily post
            continue
        tree = parse(paper_site / rel)
        assert not [a.get("href") for a in tree.iter("a") if "papers/" in a.get("href", "")], rel
        assert not [t for t in titles if t in text(tree.find(".//main"))], rel
    for feed in [paper_site / "feed.xml", *(paper_site / "categories").glob("*/feed.xml")]:
        parsed = feedparser.parse(feed.read_bytes())
        assert not [e.link for e in parsed.entries if "/papers/" in e.link], feed
    assert [e.title for e in feedparser.parse((paper_site / "feed.xml").read_bytes()).entries] == [
        "arXiv Daily – 2026-01-15",
        "arXiv Daily – 2026-01-12",
        f'Raw <script>{PWNED}</script> "q" & more',
        "arXiv Daily – 2025-10-31",
    ]
    # the paper page of 2026-01-15 sits between two daily posts by date, but is no neighbour
    nav = parse(paper_site / "2026/01/15/daily-post-2026-01-15.html").find_class("post-nav")[0]
    assert [a.get("href") for a in nav.iter("a")] == ["../../../2026/01/12/arxiv.html"]
    assert not parse(paper_site / MUSIC_PAGE_URL).find_class("post-nav")


def test_hostile_paper_page_shows_its_text_and_runs_nothing(paper_site: Path) -> None:
    for page in sorted(paper_site.rglob("*.html")):
        allowed = ("static/search.js?",) if page.name == "search.html" else ()
        assert script_problems(parse(page), allowed) == [], page
    page = parse(paper_site / ATTACK_PAGE_URL)
    assert page.find(".//h1").text == ATTACK_PAGE_TITLE.replace("<", "＜").replace(">", "＞")
    assert (
        text(page.find_class("paper-reason")[0])
        == f'理由：理由含 <img src=x onerror="{PWNED}"> 与 `反引号` {{% raw %}}'
    )
    assert text(page.find_class("paper-title-en")[0]).startswith(
        f"Attack <script>{PWNED}</script> on $\\alpha_1$ & {{{{ site }}}}"
    )
    zh = text(page.find_class("abstract")[0])
    assert f'<script>{PWNED}</script> <img src=x onerror="{PWNED}">' in zh and "{{ site.title }}" in zh
    assert "x_{i}^{*} < y" in ["".join(m.xpath(".//annotation//text()")) for m in page.iter("math")]
    tags = page.xpath("//dt[.='标签']/following-sibling::dd[1]/a")
    assert [a.text for a in tags] == ["<b>标签</b>", "语音处理", "a/b c"]
    for a in tags:  # odd tag names still get a page of their own, at a plain file name
        assert "<" not in a.get("href") and (paper_site / "papers/2601.00001" / a.get("href")).resolve().is_file()


def test_class_and_tag_pages_list_the_papers_and_have_atom_feeds(paper_site: Path) -> None:
    for overview in ("classes/index.html", "tags/index.html"):
        tree = parse(paper_site / overview)
        classes = tree.get_element_by_id("classes").xpath(".//li/a[1]")
        assert [(a.text, a.get("href")) for a in classes] == [
            ("其他", "../classes/其他/index.html"),
            ("语音合成", "../classes/语音合成/index.html"),
            ("音乐", "../classes/音乐/index.html"),
        ]
        tags = [a.text.strip() for a in tree.get_element_by_id("tags").find_class("tag")]
        assert tags[0] == "语音处理" and len(tags) == 6  # the one tag of two papers first
        links_resolve(paper_site, overview)
    listing = parse(paper_site / "tags/语音处理/index.html")
    assert listing.find(".//h1").text == "标签：语音处理"
    items = listing.find_class("paper-item")
    assert [item.find("a").get("href") for item in items] == [f"../../{ATTACK_PAGE_URL}", f"../../{REFERENCE_PAGE_URL}"]
    assert items[1].find_class("paper-title-en")[0].text == "Rate-Aware Learned Speech Compression"
    links_resolve(paper_site, "tags/语音处理/index.html")

    feeds = sorted([*(paper_site / "classes").glob("*/feed.xml"), *(paper_site / "tags").glob("*/feed.xml")])
    assert len(feeds) == 9
    for path in feeds:
        root = lxml.etree.parse(str(path)).getroot()
        assert root.tag == f"{ATOM}feed"
        parsed = feedparser.parse(path.read_bytes())
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        assert parsed.entries and all(e.link.startswith(f"{BASE}/papers/") for e in parsed.entries)
        for content in root.iter(f"{ATOM}content"):
            body = lxml.html.fromstring(f"<div>{content.text}</div>")
            assert script_problems(body) == [], path
            hrefs = [a.get("href") for a in body.iter("a")]
            assert hrefs and all(h.startswith(("https://arxiv.org/", f"{BASE}/")) for h in hrefs), hrefs
    music = feedparser.parse((paper_site / "classes/音乐/feed.xml").read_bytes())
    assert music.feed.title == "arXiv Daily · 类别：音乐"
    assert music.feed.link == f"{BASE}/classes/音乐/index.html"
    entry = music.entries[0]
    assert entry.title == "基于随机量化器的线性复杂度音乐理解自监督学习" and entry.link == f"{BASE}/{MUSIC_PAGE_URL}"
    assert [t.term for t in entry.tags] == ["音乐", "音乐信息检索", "自监督学习", "模型压缩"]
    content = entry.content[0].value
    assert "模型规模压缩了8.5%至12.3%" in content and "论文研究音乐信息检索中的自监督基础模型" in content
    assert f'href="{BASE}/tags/模型压缩/index.html"' in content
    attack = feedparser.parse((paper_site / "classes/语音合成/feed.xml").read_bytes()).entries[0]
    assert attack.title == ATTACK_PAGE_TITLE.replace("<", "＜").replace(">", "＞")


def test_search_finds_paper_pages_by_chinese_title_class_and_tag(paper_site: Path) -> None:
    assert search(paper_site, "智能语音压缩") == [(REFERENCE_PAGE_URL, "速率感知的智能语音压缩")]
    assert (MUSIC_PAGE_URL, "基于随机量化器的线性复杂度音乐理解自监督学习") in search(paper_site, "模型压缩")
    assert ATTACK_PAGE_URL in [url for url, _ in search(paper_site, "语音合成")]  # its class
    assert {url for url, _ in search(paper_site, "语音处理")[:2]} == {ATTACK_PAGE_URL, REFERENCE_PAGE_URL}  # the tag
    assert search(paper_site, "2501.11999") == [(REFERENCE_PAGE_URL, "速率感知的智能语音压缩")]
    # and the daily posts are still found as before
    assert search(paper_site, "鼓点")[0][0].startswith("2026/01/15/daily-post-2026-01-15.html#")


def test_links_to_paper_pages_work_under_a_sub_path_and_in_feeds(paper_site: Path) -> None:
    post = parse(paper_site / "2026/01/12/arxiv.html")
    link = post.xpath("//li[strong='中文页面']/a")[0]
    assert link.text == ATTACK_PAGE_TITLE and link.get("href") == f"../../../{ATTACK_PAGE_URL}"
    assert urljoin(f"{BASE}/2026/01/12/arxiv.html", link.get("href")) == f"{BASE}/{ATTACK_PAGE_URL}"
    links_resolve(paper_site, "2026/01/12/arxiv.html")
    site_feed = feedparser.parse((paper_site / "feed.xml").read_bytes())
    daily = next(e for e in site_feed.entries if e.title == "arXiv Daily – 2026-01-12")
    assert f'href="{BASE}/{ATTACK_PAGE_URL}"' in daily.content[0].value
    paper = feedparser.parse((paper_site / "categories/math.NA/feed.xml").read_bytes()).entries[0]
    assert paper.title == ATTACK_TITLE and f'href="{BASE}/{ATTACK_PAGE_URL}"' in paper.content[0].value
    assert relative_links('<a href="/papers/x/?a=1#b" rel="n">x</a> <a href="/">r</a>', "2026/01/12/p.html") == (
        '<a href="../../../papers/x/index.html?a=1#b" rel="n">x</a> <a href="../../../index.html">r</a>'
    )
    kept = '<a href="//evil.example/x">a</a> <a href="https://arxiv.org/abs/1">b</a> <a href="#s">c</a>'
    assert relative_links(kept, "a/b.html") == kept


def test_adding_a_paper_page_rewrites_only_what_depends_on_it(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts", pages=True)
    options, _ = build(tmp_path)
    assert build_site(options).written == ()
    info = PageInfo("一篇新的音乐论文", "音乐", "论文研究音乐生成。", ("音乐信息检索", "新标签"))
    new = tmp_path / "posts" / "2026-01-16-2601.00009.md"
    new.write_text(
        paper_page("2601.00009", date(2026, 1, 16), info, "A New Music Paper", "新的译文。"), encoding="utf-8"
    )
    report = build_site(options)
    written = set(report.written)
    index = {w for w in written if w.startswith("search/")}
    assert "search/meta.gz" in index and len(index) < 20
    assert written - index == {
        "papers/2601.00009/index.html",
        "classes/index.html",
        "tags/index.html",
        "classes/音乐/index.html",
        "classes/音乐/feed.xml",
        "tags/音乐信息检索/index.html",
        "tags/音乐信息检索/feed.xml",
        "tags/新标签/index.html",
        "tags/新标签/feed.xml",
    }
    assert (report.posts, report.pages) == (4, 4) and all(r.startswith("search/") for r in report.removed)
    assert search(tmp_path / "site", "新的音乐论文") == [("papers/2601.00009/index.html", "一篇新的音乐论文")]
    assert build_site(options).written == ()

    new.write_text(new.read_text(encoding="utf-8").replace('["音乐"]', '["语音识别"]'), encoding="utf-8")
    moved = build_site(options)
    assert {"classes/语音识别/index.html", "classes/音乐/index.html", "tags/新标签/index.html"} <= set(moved.written)
    assert "classes/其他/index.html" not in moved.written and "tags/语音处理/index.html" not in moved.written
    assert not [r for r in moved.removed if not r.startswith("search/")]
    new.unlink()
    removed = build_site(options)
    assert {r for r in removed.removed if not r.startswith("search/")} == {
        "papers/2601.00009/index.html",
        "classes/语音识别/index.html",
        "classes/语音识别/feed.xml",
        "tags/新标签/index.html",
        "tags/新标签/feed.xml",
    }
    assert not (tmp_path / "site/papers/2601.00009").exists() and not search(tmp_path / "site", "新的音乐论文")


def test_first_paper_page_adds_the_overview_to_the_navigation_of_every_page(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts", hostile=False)
    options, _ = build(tmp_path)
    assert not parse(tmp_path / "site/index.html").xpath("//nav//a[.='类别与标签']")
    page = tmp_path / "posts" / "2026-01-15-2601.09603.md"
    _, arxiv_id, day, info, title, translation = PAGES[0]
    page.write_text(paper_page(arxiv_id, day, info, title, translation), encoding="utf-8")
    report = build_site(options)
    html_pages = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("*.html")}
    assert html_pages <= set(report.written)
    assert parse(tmp_path / "site/index.html").xpath("//nav//a[.='类别与标签']/@href") == ["classes/index.html"]
    page.unlink()
    report = build_site(options)
    assert not parse(tmp_path / "site/index.html").xpath("//nav//a[.='类别与标签']")
    assert not (tmp_path / "site/classes").exists() and not (tmp_path / "site/tags").exists()


def test_hand_written_paper_pages_and_paginated_topics(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts", hostile=False, pages=True)
    (tmp_path / "posts" / "2026-01-01-2601.10010.md").write_text(
        "---\ntitle: 手写的页面\ndate: 2026-01-01\npermalink: /papers/2601.10010/\ncategories: 音乐\n"
        "tags: [模型压缩]\narxiv_id: 2601.10010\n---\n# 手写的页面\n\n随便写点 **粗体** 与 <script>x</script>\n",
        encoding="utf-8",
    )
    _, report = build(tmp_path, papers_per_listing=1)
    assert report.pages == 4
    page = parse(tmp_path / "site/papers/2601.10010/index.html")
    assert [h.text for h in page.iter("h1")] == ["手写的页面"]  # the body's own title is not repeated
    other = page.find_class("paper-other")[0]
    assert other.find(".//strong").text == "粗体" and script_problems(page) == []
    assert "https://arxiv.org/abs/2601.10010" in [a.get("href") for a in page.iter("a")]  # unquoted id kept whole
    assert not page.find_class("paper-reason") and not page.find_class("abstract")
    first = parse(tmp_path / "site/classes/音乐/index.html")
    assert [a.get("href") for a in first.find_class("paper-item-title")] == [f"../../{MUSIC_PAGE_URL}"]
    assert first.xpath("//nav[@class='pager']/a/@href") == ["../../classes/音乐/1.html"]
    older = parse(tmp_path / "site/classes/音乐/1.html")
    assert [a.get("href") for a in older.find_class("paper-item-title")] == ["../../papers/2601.10010/index.html"]
    assert "tags/模型压缩/1.html" in report.written


def _children() -> list[int]:
    """This process's child processes, ended ones not yet waited for included."""
    return [int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()]


@pytest.mark.usefixtures("forkable")
def test_a_full_build_failing_in_its_listings_leaves_no_process_writing_its_search_index(tmp_path: Path) -> None:
    """A full build's search segments are written by a process forked before the listings render: a
    listing that fails ends the build with its error, and that process with it; the next build is
    a full one whose search works."""
    write_posts(tmp_path / "posts")
    mine = tmp_path / "templates"
    mine.mkdir()
    broken = '{% extends "!default/category.html" %}{% block main %}{{ no_such_name }}{% endblock %}'
    (mine / "category.html").write_text(broken, encoding="utf-8")
    before = _children()
    with pytest.raises(SiteError, match="no_such_name"):
        build(tmp_path, templates_dirs=(mine,))
    assert _children() == before
    (mine / "category.html").unlink()
    options, report = build(tmp_path, templates_dirs=(mine,))
    assert report.full
    build_site(replace(options, site_dir=tmp_path / "untouched"))  # a build that never failed
    assert search(tmp_path / "site", "量化")
    assert _search_results(tmp_path / "site") == _search_results(tmp_path / "untouched")
