"""The site build's state: kept outside the published folder, trusted only when the last build
finished, its conversions reused after a template change, and an incremental build that writes
what changed (a set that does not grow with the site) and gives a full build's bytes."""

from __future__ import annotations

import gc
import marshal
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from arxiv_digest.config import load_config, site_options
from arxiv_digest.search_docs import SearchIndexError
from arxiv_digest.site import SiteError, SiteOptions, build_site, feeds, state_folder, template_dirs, work
from arxiv_digest.site.manifest import BuildState, PackedLinks, PaperLink
from arxiv_digest.site.search import SearchPlan, SiteSearch

from .site_support import parse, pipeline_post, search, text, write_posts

FIRST_DAY = date(2025, 11, 1)
OTHER_CATEGORIES = ("cs.CL", "cs.LG", "eess.SP", "cs.MM")


def _post(number: int) -> str:
    """Daily post ``number``: one paper in cs.SD, eess.AS and one of four other categories."""
    day = FIRST_DAY + timedelta(days=number)
    text = pipeline_post(day, translation=f"第{number}期的译文，研究音频。", arxiv_id=f"2511.{number:05d}")
    return text.replace("math.NA", OTHER_CATEGORIES[number % len(OTHER_CATEGORIES)])


def _write_daily(posts: Path, count: int) -> None:
    posts.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (posts / f"{FIRST_DAY + timedelta(days=number)}-arxiv.md").write_text(_post(number), encoding="utf-8")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _outside_search(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if not name.startswith("search/")}


def test_state_lives_outside_the_published_folder(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts")
    options = SiteOptions(tmp_path / "posts", tmp_path / "site")
    build_site(options)
    published = _files(tmp_path / "site")
    assert not [name for name in published if name.rsplit("/", 1)[-1].startswith(".")]
    assert not [name for name in published if not name.endswith((".html", ".xml", ".json", ".css", ".js", ".gz"))]
    assert state_folder(options) == tmp_path / ".site-state"
    assert (tmp_path / ".site-state" / "build.sqlite3").is_file()

    elsewhere = SiteOptions(tmp_path / "posts", tmp_path / "site2", state_dir=tmp_path / "kept")
    assert build_site(elsewhere).full and build_site(elsewhere).written == ()
    assert (tmp_path / "kept" / "build.sqlite3").is_file() and not (tmp_path / ".site2-state").exists()


def test_config_keeps_the_state_beside_the_store(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("store:\n  path: data/digest.sqlite3\n", encoding="utf-8")
    options = site_options(load_config(tmp_path / "config.yaml"))
    assert options.state_dir == tmp_path / "data" / "site-build"


def test_template_change_rerenders_every_page_and_reuses_every_conversion(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts")
    mine = tmp_path / "templates"
    mine.mkdir()
    options = SiteOptions(tmp_path / "posts", tmp_path / "site", templates_dirs=(mine,))
    first = build_site(options)
    assert first.converted >= first.posts  # each post's body, and the papers its category feeds show

    packaged = (template_dirs(())[-1] / "base.html").read_text(encoding="utf-8")
    (mine / "base.html").write_text(packaged.replace("</footer>", "</footer><!-- mine -->"), encoding="utf-8")
    changed = build_site(options)
    pages = [p for p in _files(tmp_path / "site") if p.endswith(".html")]
    assert set(pages) <= set(changed.written)
    assert all(b"<!-- mine -->" in (tmp_path / "site" / p).read_bytes() for p in pages)
    assert changed.converted == 0
    # rewritten by swapping in each process's spare; the spares, holding old pages, are removed
    assert list((state_folder(options) / "spares").iterdir()) == []
    assert not [p for p in (tmp_path / "site").rglob(".*")]


def test_a_build_that_fails_half_way_is_followed_by_a_full_one(tmp_path: Path) -> None:
    _write_daily(tmp_path / "posts", 6)
    mine = tmp_path / "templates"
    mine.mkdir()
    options = SiteOptions(tmp_path / "posts", tmp_path / "site", templates_dirs=(mine,), posts_per_listing=2)
    build_site(options)
    (mine / "category.html").write_text(
        '{% extends "!default/category.html" %}{% block main %}{{ category.name.nope }}{% endblock %}',
        encoding="utf-8",
    )
    with pytest.raises(SiteError, match=r"category\.html"):
        build_site(options)  # posts were rewritten for the new template before the listings failed
    with sqlite3.connect(state_folder(options) / "build.sqlite3") as db:
        assert db.execute("SELECT value FROM meta WHERE name = 'complete'").fetchone() == ("0",)
    (mine / "category.html").unlink()
    again = build_site(options)
    assert again.full and again.converted == 0  # conversions are keyed by content: still good


def _add_one_post(tmp_path: Path, count: int) -> set[str]:
    """A site of ``count`` posts, then one more: what the incremental build wrote, outside the
    search index (the search module's: its own tests compare incremental and full results)."""
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, count)
    options = SiteOptions(posts, site, posts_per_listing=5)
    build_site(options)
    (posts / f"{FIRST_DAY + timedelta(days=count)}-arxiv.md").write_text(_post(count), encoding="utf-8")
    report = build_site(options)
    assert not report.full and report.converted == 2  # the new post, and its paper for the category feeds
    return {w for w in report.written if not w.startswith("search/")}


def _expected(count: int) -> set[str]:
    """What showing post ``count`` (of category cs.CL) changes: it and its neighbour, the first
    listings it appears on, its month, the feeds, and the category totals."""
    day = FIRST_DAY + timedelta(days=count)
    listings = {f"categories/{c}/{name}" for c in ("cs.SD", "eess.AS", "cs.CL") for name in ("index.html", "feed.xml")}
    return listings | {
        f"{day:%Y/%m/%d}/arxiv.html",
        f"{day - timedelta(days=1):%Y/%m/%d}/arxiv.html",
        f"archive/{day:%Y-%m}.html",
        *("archive/index.html", "categories/index.html", "feed.xml", "index.html"),
    }


def test_a_template_change_reuses_the_kept_conversions_of_a_site_given_by_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers open the build state themselves (read-only, by URI): a relative folder, and one
    whose name needs escaping in a URI, must work as an absolute one does."""
    monkeypatch.chdir(tmp_path)
    _write_daily(Path("posts"), 3)
    options = SiteOptions(Path("posts"), Path("my site #1?"), templates_dirs=(Path("mine"),))
    assert build_site(options).converted > 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "base.html").write_text(
        '{% extends "!default/base.html" %}{% block head %}<meta name="x" content="y">{% endblock %}'
    )
    again = build_site(options)
    assert not again.full and again.converted == 0 and "2025/11/01/arxiv.html" in again.written
    assert '<meta name="x" content="y">' in (tmp_path / "my site #1?" / "2025/11/01/arxiv.html").read_text()


def test_a_damaged_build_state_is_replaced_by_a_full_build(tmp_path: Path) -> None:
    _write_daily(tmp_path / "posts", 3)
    options = SiteOptions(tmp_path / "posts", tmp_path / "site")
    build_site(options)
    state = state_folder(options) / "build.sqlite3"
    state.write_bytes(b"not a database" * 100)
    again = build_site(options)
    assert again.full and again.converted > 0
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert not build_site(options).full


def test_a_damaged_search_index_state_is_replaced_by_a_full_build(tmp_path: Path) -> None:
    _write_daily(tmp_path / "posts", 3)
    options = SiteOptions(tmp_path / "posts", tmp_path / "site")
    build_site(options)
    state = state_folder(options) / "search" / "search-index.sqlite"
    state.write_bytes(b"not a database" * 100)
    for journal in state.parent.glob("*-wal"):
        journal.unlink()
    again = build_site(options)
    assert again.full and "search/meta.gz" in again.written
    assert len(search(options.site_dir, "2511")) == 3
    assert not build_site(options).full


def _left_by_other_code(state: Path, **meta: str) -> None:
    """The build state as another version of this code left it (``renderer``, ``documents``), its
    conversions that version's."""
    with sqlite3.connect(state / "build.sqlite3") as db:
        db.executemany("UPDATE meta SET value = ? WHERE name = ?", [(value, name) for name, value in meta.items()])
        db.execute("UPDATE conversions SET renderer = ?", (meta["renderer"],))
    db.close()


def _filed_pages(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The pages whose documents each build from now on hands to the search index."""
    filed: list[set[str]] = []
    plan = SiteSearch.plan

    def recorded(self: SiteSearch, *args: Any) -> SearchPlan:
        found = plan(self, *args)
        filed.append({doc.page for doc in found.added})
        return found

    monkeypatch.setattr(SiteSearch, "plan", recorded)
    return filed


def test_a_new_renderer_keeps_the_search_index_and_files_only_the_documents_that_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade that changes the renderer but not the code that makes the search's documents: every
    post is converted again, but the index is kept. The posts whose documents are as they were are
    not even handed to it, and nothing of it is rewritten; a post changed meanwhile is filed again
    and a deleted one dropped, and every query finds what a first build's index finds."""
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, 8)
    options = SiteOptions(posts, site)
    build_site(options)
    state = state_folder(options)
    filed = _filed_pages(monkeypatch)
    _left_by_other_code(state, renderer="an earlier version")
    upgraded = build_site(options)
    assert upgraded.full and upgraded.converted >= 8
    assert filed == [set()] and not [name for name in upgraded.written if name.startswith("search/")]

    _left_by_other_code(state, renderer="an earlier version")
    (posts / f"{FIRST_DAY}-arxiv.md").unlink()
    changed = FIRST_DAY + timedelta(days=3)
    (posts / f"{changed}-arxiv.md").write_text(_post(3).replace("第3期的译文", "第3期改过的译文"), encoding="utf-8")
    again = build_site(options)
    assert again.full and filed[1] == {f"{changed:%Y/%m/%d}/arxiv.html"}
    first = replace(options, site_dir=tmp_path / "first", state_dir=tmp_path / "first-state")
    build_site(first)
    for query in ("2511", "改过的译文", "研究音频", "2511.00000", "2511.00003", "第3期"):
        assert search(site, query) == search(first.site_dir, query), query
    assert not search(site, "2511.00000") and len(search(site, "改过的译文")) == 1


def test_a_new_renderer_hands_the_kept_index_nothing_of_an_unchanged_site_with_paper_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Papers that have their own pages are found as those pages: compared as the index has them, they
    are unchanged too, and so are the pages whose papers are in no post."""
    write_posts(tmp_path / "posts", pages=True)
    options = SiteOptions(tmp_path / "posts", tmp_path / "site")
    build_site(options)
    searched = _files(options.site_dir / "search")
    filed = _filed_pages(monkeypatch)
    _left_by_other_code(state_folder(options), renderer="an earlier version")
    report = build_site(options)
    assert report.full and report.pages and filed == [set()]
    assert searched == _files(options.site_dir / "search")


def test_a_change_to_the_code_that_makes_the_search_documents_builds_the_index_afresh(tmp_path: Path) -> None:
    """Every document is filed again then, which an index built from scratch does faster: it is
    byte for byte what a first build writes."""
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, 6)
    options = SiteOptions(posts, site)
    build_site(options)
    _left_by_other_code(state_folder(options), renderer="an earlier version", documents="an earlier version")
    report = build_site(options)
    assert report.full and "search/meta.gz" in report.written
    first = replace(options, site_dir=tmp_path / "first", state_dir=tmp_path / "first-state")
    build_site(first)
    assert _files(site / "search") == _files(first.site_dir / "search")


def test_a_deleted_site_folder_is_written_again_even_with_posts_removed_meanwhile(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts")
    options = SiteOptions(tmp_path / "posts", tmp_path / "site")
    build_site(options)
    shutil.rmtree(tmp_path / "site")
    (tmp_path / "posts" / "2026-01-12-arxiv.md").unlink()
    again = build_site(options)
    assert again.full and "2026/01/12/arxiv.html" in again.removed
    assert not (tmp_path / "site/2026/01/12").exists()
    fresh = build_site(replace(options, site_dir=tmp_path / "fresh", state_dir=tmp_path / "fresh-state"))
    assert sorted(again.written) == sorted(fresh.written)
    assert _files(tmp_path / "site") == _files(tmp_path / "fresh")


def test_adding_a_post_writes_a_set_that_does_not_grow_with_the_site_and_equals_a_full_build(
    tmp_path: Path,
) -> None:
    assert _add_one_post(tmp_path / "small", 12) == _expected(12)
    assert _add_one_post(tmp_path / "large", 44) == _expected(44)

    fresh = SiteOptions(tmp_path / "large" / "posts", tmp_path / "fresh", posts_per_listing=5)
    assert build_site(fresh).full
    # the search index is left out: an incremental build appends a segment where a full one writes
    # one (tests/test_search_index.py checks that both find the same papers)
    incremental, full = (
        _outside_search(_files(folder)) for folder in (tmp_path / "large" / "site", tmp_path / "fresh")
    )
    assert incremental.keys() == full.keys()
    assert [name for name in full if incremental[name] != full[name]] == []


def test_an_incremental_build_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    """What a build holds is frozen out of the collector's reach while it runs; ``serve`` builds
    again and again in one process, whose garbage must stay collectable."""
    _write_daily(tmp_path / "posts", 6)
    options = SiteOptions(tmp_path / "posts", tmp_path / "site")
    build_site(options)
    (tmp_path / "posts" / f"{FIRST_DAY + timedelta(days=6)}-arxiv.md").write_text(_post(6), encoding="utf-8")
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, 0)
    assert not build_site(options).full
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, 0)

    gc.disable()  # and a caller that paused it finds it paused
    try:
        build_site(options)
        assert (gc.isenabled(), gc.get_freeze_count()) == (False, 0)
    finally:
        gc.enable()


def test_the_archive_overview_counts_each_month_by_year_and_links_its_listing(tmp_path: Path) -> None:
    _write_daily(tmp_path / "posts", 62)  # 2025-11-01 .. 2026-01-01, a paper each
    build_site(SiteOptions(tmp_path / "posts", tmp_path / "site"))
    overview = parse(tmp_path / "site" / "archive" / "index.html")
    years = [(h.text_content(), [text(li) for li in h.getparent().iter("li")]) for h in overview.iter("h2")]
    assert years == [("2026", ["2026-01 1 期 · 1 篇"]), ("2025", ["2025-12 31 期 · 31 篇", "2025-11 30 期 · 30 篇"])]
    assert overview.xpath("//main//li/a/@href")[-1] == "../archive/2025-11.html"
    november = parse(tmp_path / "site" / "archive" / "2025-11.html")
    shown = {a.get("href") for a in november.iter("a") if a.get("href", "").endswith("arxiv.html")}
    assert shown == {f"../2025/11/{day:02d}/arxiv.html" for day in range(1, 31)}


def test_worker_and_forked_processes_write_what_one_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_daily(tmp_path / "posts", 50)  # enough sources for worker processes, and listings for forks
    parallel = build_site(SiteOptions(tmp_path / "posts", tmp_path / "parallel", posts_per_listing=1))
    monkeypatch.setattr(work, "PARALLEL_MIN_SOURCES", 10**6)
    monkeypatch.setattr(work, "FORKED_MIN_TASKS", 10**6)
    alone = build_site(SiteOptions(tmp_path / "posts", tmp_path / "alone", posts_per_listing=1))
    assert len(parallel.written) == len(alone.written) > 2 * work.FORKED_TASKS_PER_SLICE
    shown, expected = _files(tmp_path / "parallel"), _files(tmp_path / "alone")
    assert shown.keys() == expected.keys()
    assert [name for name in shown if shown[name] != expected[name]] == []


def test_an_old_listing_page_deleted_from_the_site_is_written_again_by_the_next_build(tmp_path: Path) -> None:
    """Chunks older than the newest change are kept without being keyed, but only while their file
    is there."""
    _write_daily(tmp_path / "posts", 16)
    options = SiteOptions(tmp_path / "posts", tmp_path / "site", posts_per_listing=2)
    build_site(options)
    old_pages = ("page/2.html", "categories/cs.SD/2.html", "categories/cs.LG/1.html", "categories/cs.LG/feed.xml")
    expected = {rel: (tmp_path / "site" / rel).read_bytes() for rel in old_pages}
    for rel in old_pages:  # (a category's older posts are read again; cs.LG gets no new post)
        (tmp_path / "site" / rel).unlink()
    (tmp_path / "posts" / f"{FIRST_DAY + timedelta(days=16)}-arxiv.md").write_text(_post(16), encoding="utf-8")
    report = build_site(options)
    assert not report.full and set(old_pages) <= set(report.written)
    assert {rel: (tmp_path / "site" / rel).read_bytes() for rel in old_pages} == expected


def test_a_post_page_deleted_from_the_site_is_written_again_from_its_kept_conversion(tmp_path: Path) -> None:
    _write_daily(tmp_path / "posts", 4)
    options = SiteOptions(tmp_path / "posts", tmp_path / "site")
    build_site(options)
    page = tmp_path / "site" / "2025" / "11" / "02" / "arxiv.html"
    expected = page.read_bytes()
    page.unlink()
    report = build_site(options)
    assert not report.full and report.converted == 0
    assert [w for w in report.written if not w.startswith("search/")] == ["2025/11/02/arxiv.html"]
    assert page.read_bytes() == expected


def _outputs(state: Path) -> dict[str, str]:
    with sqlite3.connect(state / "build.sqlite3") as db:
        return dict(db.execute("SELECT path, key FROM outputs"))


EDITS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "edit", "recategorise", "rename", "redate"]), st.integers(0, 40)),
    min_size=1,
    max_size=3,
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
@example(edits=[("remove", 15)])  # the newest post removed: the next one's "newer" link goes
def test_incremental_builds_key_and_write_what_a_full_build_does_whatever_changes(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[str, int]]
) -> None:
    """Posts added, removed, edited, moved to another category or another day, anywhere in the
    site's history: after each incremental build (which keeps the listing chunks before the oldest
    change without keying them), every output has the key, and the bytes, a full build gives it."""
    work = tmp_path_factory.mktemp("edits")
    posts = work / "posts"
    _write_daily(posts, 16)
    options = SiteOptions(posts, work / "site", posts_per_listing=2)
    build_site(options)
    for step, (edit, number) in enumerate(edits):
        files = sorted(posts.glob("*.md"))
        target = files[number % len(files)]
        if edit == "add":
            day = FIRST_DAY - timedelta(days=1 + number)
            (posts / f"{day}-arxiv.md").write_text(_post(number), encoding="utf-8")
        elif edit == "remove":
            target.unlink()
        elif edit == "edit":
            body = target.read_text(encoding="utf-8")
            target.write_text(body.replace("研究音频", f"研究音频{step}"), encoding="utf-8")
        elif edit == "recategorise":
            body = target.read_text(encoding="utf-8")
            target.write_text(body.replace("cs.SD", OTHER_CATEGORIES[step % 4]), encoding="utf-8")
        elif edit == "rename":  # removed from its place, added at another
            target.rename(posts / f"{FIRST_DAY + timedelta(days=60 + number)}-arxiv.md")
        else:  # the same source, dated another day (one no other post has) by its front matter
            day = FIRST_DAY + timedelta(days=100 + 50 * step + number)
            body = re.sub(r"(?m)^date: .*\n", "", target.read_text(encoding="utf-8"))
            target.write_text(body.replace("---\n", f"---\ndate: {day}\n", 1), encoding="utf-8")
        report = build_site(options)
        assert not report.full
        fresh = replace(options, site_dir=work / f"full{step}", state_dir=work / f"full{step}-state")
        assert build_site(fresh).full
        assert _outputs(state_folder(options)) == _outputs(work / f"full{step}-state")
        shown, expected = (_outside_search(_files(f)) for f in (options.site_dir, fresh.site_dir))
        assert [name for name in expected if shown.get(name) != expected[name]] == []


def test_packed_paper_links_are_equal_by_value_whatever_their_bytes() -> None:
    category = "cs.SD"
    links = (PaperLink("a", "Title <em>A</em>", (category,), "2601.00001"), PaperLink("", "B", (category,), "2"))
    packed = PackedLinks(marshal.dumps(tuple(tuple(p) for p in links)), 2)
    shared = "".join(["cs.", "SD"])  # one object in both papers: marshal writes it once, then a reference
    rows = (("a", "Title <em>A</em>", (shared,), "2601.00001"), ("", "B", (shared,), "2"))
    same_value = PackedLinks(marshal.dumps(rows), 2)
    assert packed.packed != same_value.packed
    assert packed == same_value == links and packed == PackedLinks(packed.packed, 2)
    assert packed != PackedLinks(marshal.dumps((tuple(links[0]),)), 1) and packed != links[:1]


def test_adding_a_post_leaves_the_search_index_to_a_process_forked_for_it(tmp_path: Path) -> None:
    """The building process does not load the index's code (numpy, a third of the imports of adding
    a post), and the new post is found."""
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, 6)
    build_site(SiteOptions(posts, site))
    (posts / f"{FIRST_DAY + timedelta(days=6)}-arxiv.md").write_text(_post(6), encoding="utf-8")
    code = (
        "import sys; from pathlib import Path; from arxiv_digest.site import SiteOptions, build_site; "
        "report = build_site(SiteOptions(Path(sys.argv[1]), Path(sys.argv[2]))); "
        "print(report.full, report.converted, 'numpy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code, posts, site], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "2", "False"]
    found = [url.split("#")[0] for url, _ in search(site, "2511.00006")]
    assert found == [f"{FIRST_DAY + timedelta(days=6):%Y/%m/%d}/arxiv.html"]


def test_a_search_index_the_update_cannot_read_is_one_error_and_the_next_build_rebuilds_it(tmp_path: Path) -> None:
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, 6)
    options = SiteOptions(posts, site)
    build_site(options)
    for shard in (site / "search").glob("s*/d*.gz"):
        shard.write_bytes(b"not gzip")
    (posts / f"{FIRST_DAY + timedelta(days=6)}-arxiv.md").write_text(_post(6), encoding="utf-8")
    with pytest.raises(SearchIndexError, match=r"unreadable .*; rebuild the site"):
        build_site(options)
    again = build_site(options)
    assert again.full and len(search(site, "2511")) == 7


def _as_without_search(page: bytes) -> bytes:
    """A page as it is with search off: no link to the search page, and an assets' version of their
    own (the search script is not among them); the lines left blank dropped."""
    page = re.sub(rb"<a href=\"[./]*search\.html\">[^<]*</a>", b"", re.sub(rb"\?v=\w+", b"?v=", page))
    return re.sub(rb"\n\s*\n", b"\n", page)


def test_search_off_publishes_no_search_and_removes_the_index_built_before(tmp_path: Path) -> None:
    """``site.search: false``: no search page, script or index, and no page links to them; the index
    an earlier build published goes with its state, and every other file is what a build with search
    writes but for that link. Turned on again, the index is built from the kept conversions, byte
    for byte what a first build writes."""
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, 6)
    with_search = SiteOptions(posts, site)
    build_site(with_search)
    searched = _files(site)
    index_state = state_folder(with_search) / "search"
    assert index_state.is_dir() and "search/meta.gz" in searched

    without = build_site(replace(with_search, search=False))
    files = _files(site)
    search_files = {name for name in searched if name.startswith(("search/", "search.html", "static/search.js"))}
    assert set(without.removed) == search_files and set(files) == set(searched) - search_files
    assert not index_state.exists() and not (site / "search").exists()
    for name, data in files.items():
        assert b"search" not in data.replace(b"research", b"") or not name.endswith(".html"), name
        if name.endswith(".html"):
            assert _as_without_search(data) == _as_without_search(searched[name]), name
        else:
            assert data == searched[name], name

    _write_daily(posts, 7)  # adding a post without search: no index, and its code is not even loaded
    code = (
        "import sys; from pathlib import Path; from arxiv_digest.site import SiteOptions, build_site; "
        "report = build_site(SiteOptions(Path(sys.argv[1]), Path(sys.argv[2]), search=False)); "
        "print(report.full, len(report.written), any('search' in n for n in report.written), "
        "'arxiv_digest.search_index' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code, posts, site], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    full, written, searchable, index_code = done.stdout.split()
    assert (full, searchable, index_code) == ("False", "False", "False") and int(written) > 0
    assert not (site / "search").exists()

    again = build_site(with_search)
    elsewhere = replace(with_search, site_dir=tmp_path / "elsewhere", state_dir=tmp_path / "elsewhere-state")
    assert again.converted == 0 and build_site(elsewhere).converted > 0
    assert _files(site) == _files(elsewhere.site_dir) and len(search(site, "2511")) == 7


def test_a_finished_build_keeps_only_this_codes_conversions(tmp_path: Path) -> None:
    """Conversions by other code (a renderer before or after this one) go when a build finishes;
    this code's stay, so a template change after it converts nothing."""
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, 3)
    options = SiteOptions(posts, site)
    build_site(options)
    state = state_folder(options) / "build.sqlite3"
    with sqlite3.connect(state) as db:
        (renderer,) = db.execute("SELECT value FROM meta WHERE name = 'renderer'").fetchone()
        db.execute("INSERT INTO conversions VALUES ('a source', -1, '!an older version', x'00')")
        db.execute("INSERT INTO conversions VALUES ('another', 0, '~a newer version', x'00')")
    db.close()
    _write_daily(posts, 4)
    assert not build_site(options).full
    with sqlite3.connect(state) as db:
        kept = {found for (found,) in db.execute("SELECT DISTINCT renderer FROM conversions")}
    db.close()
    assert kept == {renderer}
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "base.html").write_text('{% extends "!default/base.html" %}', encoding="utf-8")
    assert build_site(replace(options, templates_dirs=(templates,))).converted == 0


def test_category_feeds_reuse_their_entries_only_as_they_would_render_now(tmp_path: Path) -> None:
    """A category feed takes the entries its last version had only while what renders an entry is
    the same: after a change of the site's address, or of the macro that renders entries, its feeds
    are a first build's, byte for byte."""
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, 6)
    options = SiteOptions(posts, site, base_url="https://old.example/digest")
    build_site(options)
    templates = tmp_path / "templates"
    templates.mkdir()
    macros = (template_dirs(())[-1] / "_macros.html").read_text(encoding="utf-8")
    marked = re.sub(r"(\{% macro paper_entry\([^)]*\) -?%\})", r"\1<p>marked</p>", macros, count=1)
    assert marked != macros
    (templates / "_macros.html").write_text(marked, encoding="utf-8")
    for changed in (
        replace(options, base_url="https://new.example/digest"),
        replace(options, base_url="https://new.example/digest", templates_dirs=(templates,)),
    ):
        build_site(changed)
        elsewhere = replace(changed, site_dir=tmp_path / "elsewhere", state_dir=tmp_path / "elsewhere-state")
        shutil.rmtree(elsewhere.site_dir, ignore_errors=True)
        shutil.rmtree(tmp_path / "elsewhere-state", ignore_errors=True)
        build_site(elsewhere)
        feeds = {name: data for name, data in _files(site).items() if name.startswith("categories/")}
        assert feeds and feeds.keys() <= _files(elsewhere.site_dir).keys()
        assert feeds == {name: _files(elsewhere.site_dir)[name] for name in feeds}
        assert not [name for name, data in feeds.items() if b"old.example" in data]
    assert any(b"marked" in data for name, data in _files(site).items() if name.endswith(".xml"))


def test_adding_a_post_renders_only_its_own_papers_into_the_category_feeds(tmp_path: Path) -> None:
    """The older papers that a category feed still shows come from its last version: with their kept
    texts gone from the build state, adding a post converts its own body and paper and nothing else,
    and its feeds are a first build's."""
    posts, site = tmp_path / "posts", tmp_path / "site"
    _write_daily(posts, 6)
    options = SiteOptions(posts, site)
    build_site(options)
    with sqlite3.connect(state_folder(options) / "build.sqlite3") as db:
        db.execute("DELETE FROM conversions WHERE part >= 0")  # every paper's texts
    db.close()
    (posts / f"{FIRST_DAY + timedelta(days=6)}-arxiv.md").write_text(_post(6), encoding="utf-8")
    assert build_site(options).converted == 2
    elsewhere = replace(options, site_dir=tmp_path / "elsewhere", state_dir=tmp_path / "elsewhere-state")
    build_site(elsewhere)
    expected = _files(elsewhere.site_dir)
    feeds = {name: data for name, data in _files(site).items() if name.endswith(".xml")}
    assert feeds == {name: expected[name] for name in feeds}


def test_kept_paper_texts_of_more_posts_than_one_query_lists_are_all_found(tmp_path: Path) -> None:
    state = BuildState(tmp_path / "state")
    digests = [f"post {number}" for number in range(1201)]  # three queries' worth
    state.store("this code", [(d, part, d.encode()) for d in digests for part in (-1, 0, 3)])
    state.store("other code", [("post 7", 5, b"stale")])
    found = state.paper_conversions({*digests, "never kept"}, "this code")
    state.close()
    assert found["never kept"] == {} and len(found) == 1202
    assert all(found[d] == {0: d.encode(), 3: d.encode()} for d in digests)


def test_category_feeds_made_a_few_at_a_time_are_those_made_all_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build reads and renders its category feeds' papers a group of feeds at a time, so that its
    process never holds every shown paper's texts at once; papers that feeds of different groups
    share (every post here is in cs.SD and eess.AS) are rendered once and the feeds come out the same."""
    posts = tmp_path / "posts"
    posts.mkdir()
    for number in range(20):  # each post in a category of its own too: 22 category feeds
        day = FIRST_DAY + timedelta(days=number)
        text = pipeline_post(day, translation=f"第{number}期。", arxiv_id=f"2511.{number:05d}")
        (posts / f"{day}-arxiv.md").write_text(text.replace("math.NA", f"cs.X{number:02d}"), encoding="utf-8")
    monkeypatch.setattr(feeds, "FEEDS_AT_ONCE", 1)
    one_by_one = build_site(SiteOptions(posts, tmp_path / "one-by-one"))
    monkeypatch.setattr(feeds, "FEEDS_AT_ONCE", 1000)
    together = build_site(SiteOptions(posts, tmp_path / "together"))
    written = [name for name in one_by_one.written if name.startswith("categories/") and name.endswith(".xml")]
    assert len(written) == 22 and one_by_one.converted == together.converted
    assert {n: (tmp_path / "one-by-one" / n).read_bytes() for n in written} == {
        n: (tmp_path / "together" / n).read_bytes() for n in written
    }
