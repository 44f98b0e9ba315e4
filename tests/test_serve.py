"""The preview server (``arxiv-digest serve``): serving with live reload, rebuilding on change and
keeping the last good build, path traversal, hostile requests (long segments, foreign Host headers,
200 clients at once), and how it starts and stops as the user sees it (busy port, --host 0.0.0.0,
SIGTERM)."""

from __future__ import annotations

import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote, urljoin

import lxml.html
import pytest

from arxiv_digest.serve import ServeHandle, safe_path, serve
from arxiv_digest.site import SiteError, SiteOptions

from .site_support import ATTACK_PAGE_TITLE, PAGES, REFERENCE, REFERENCE_POSTS, paper_page, pipeline_post, write_posts


def wait_for(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def raw_request(handle: ServeHandle, path: str) -> int:
    """A request line sent as is, so the client cannot normalise ``..`` away."""
    host, port = handle.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return int(sock.recv(64).split()[1])


@pytest.fixture
def preview(tmp_path: Path) -> Iterator[tuple[ServeHandle, Path]]:
    write_posts(tmp_path / "posts", hostile=False)
    (tmp_path / "templates").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text("title: First\n", encoding="utf-8")

    def options() -> SiteOptions:
        title = config.read_text(encoding="utf-8").split(":", 1)[1].strip()
        return SiteOptions(tmp_path / "posts", tmp_path / "unused", (tmp_path / "templates",), title=title)

    ready: list[ServeHandle] = []
    handle = serve(options(), port=0, watch_paths=(config,), on_ready=ready.append, reload_options=options)
    try:
        assert ready == [handle] and handle.build_count == 1 and handle.last_error is None
        yield handle, tmp_path
    finally:
        handle.stop()
    assert handle.stopped
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(handle.url.rsplit(":", 1)[1])), timeout=2).close()


def test_serve_serves_with_live_reload_and_rejects_traversal(preview: tuple[ServeHandle, Path]) -> None:
    handle, _ = preview
    status, page = fetch(handle.url + "/")
    assert status == 200 and '<script src="/__livereload.js?gen=1"></script></body>' in page
    assert fetch(handle.url + "/2026/01/15/daily-post-2026-01-15.html")[0] == 200
    assert fetch(handle.url + "/__livereload?gen=1") == (200, "retry: 1000\n\n")
    assert "data: 1" in fetch(handle.url + "/__livereload?gen=0")[1]
    for path in ("/../../etc/passwd", "/..%2f..%2fetc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/a/..%5c..%5cetc"):
        assert raw_request(handle, path) == 400, path
    assert raw_request(handle, "/%252e%252e/etc/passwd") == 404
    assert fetch(handle.url + "/.build-manifest.json")[0] == 404
    assert fetch(handle.url + "/categories/cs.SD")[0] == 200  # redirected to the folder's index
    assert safe_path("/a/b/../c") is None and safe_path("/a//b/") == "a/b"


def test_serve_rebuilds_on_changes_and_keeps_the_last_good_build(preview: tuple[ServeHandle, Path]) -> None:
    handle, folder = preview
    (folder / "posts" / "2026-01-20-arxiv.md").write_text(pipeline_post(date(2026, 1, 20)), encoding="utf-8")
    wait_for(lambda: fetch(handle.url + "/2026/01/20/arxiv.html")[0] == 200)
    assert handle.build_count >= 2
    assert "data: " in fetch(handle.url + "/__livereload?gen=1")[1]

    good = handle.build_count
    (folder / "templates" / "post.html").write_text("{% block main %}{{ broken", encoding="utf-8")
    wait_for(lambda: handle.last_error is not None)
    assert "post.html" in handle.last_error and handle.build_count == good
    status, page = fetch(handle.url + "/2026/01/20/arxiv.html")
    assert status == 200 and "post-body" in page  # still the last good build
    assert "event: failure" in fetch(f"{handle.url}/__livereload?gen={handle.generation}")[1]

    (folder / "templates" / "post.html").unlink()
    wait_for(lambda: handle.build_count > good and handle.last_error is None)

    (folder / "config.yaml").write_text("title: Second\n", encoding="utf-8")
    wait_for(lambda: "<title>Second</title>" in fetch(handle.url + "/index.html")[1])


def test_serve_resolves_links_from_posts_to_paper_pages(preview: tuple[ServeHandle, Path]) -> None:
    handle, folder = preview
    _, arxiv_id, day, info, title, translation = PAGES[1]
    (folder / "posts" / "2026-01-12-2601.00001.md").write_text(
        paper_page(arxiv_id, day, info, title, translation), encoding="utf-8"
    )
    post = pipeline_post(date(2026, 1, 20), page=(ATTACK_PAGE_TITLE, "/papers/2601.00001/"))
    (folder / "posts" / "2026-01-20-arxiv.md").write_text(post, encoding="utf-8")
    post_url = handle.url + "/2026/01/20/arxiv.html"
    wait_for(lambda: fetch(post_url)[0] == 200 and fetch(handle.url + "/papers/2601.00001/")[0] == 200)
    href = lxml.html.fromstring(fetch(post_url)[1]).xpath("//li[strong='中文页面']/a/@href")[0]
    status, page = fetch(urljoin(post_url, href))
    assert status == 200 and "<h1>攻击 ＜script＞" in page
    assert fetch(handle.url + "/papers/2601.00001")[0] == 200  # redirected to the folder's index
    tag = lxml.html.fromstring(page).xpath("//dt[.='标签']/following-sibling::dd[1]/a/@href")[0]
    status, listing = fetch(quote(urljoin(handle.url + "/papers/2601.00001/", tag), safe=":/"))  # as a browser does
    assert status == 200 and "<h1>标签：&lt;b&gt;标签&lt;/b&gt;</h1>" in listing


def test_serve_listens_on_loopback_only(tmp_path: Path) -> None:
    write_posts(tmp_path / "posts", hostile=False)
    with pytest.raises(SiteError, match="loopback"):
        serve(SiteOptions(tmp_path / "posts", tmp_path / "site"), host="0.0.0.0", port=0)


def test_serve_shows_why_the_first_build_failed(tmp_path: Path) -> None:
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "2026-01-01-x.md").write_text("---\ntitle: [unclosed\n---\n", encoding="utf-8")
    handle = serve(SiteOptions(tmp_path / "posts", tmp_path / "site"), port=0)
    try:
        status, page = fetch(handle.url + "/")
        assert status == 503 and "not valid YAML" in page and handle.build_count == 0
        shutil.copyfile(REFERENCE / REFERENCE_POSTS[0], tmp_path / "posts" / "2026-01-01-x.md")
        wait_for(lambda: handle.build_count >= 1)
        assert fetch(handle.url + "/")[0] == 200
    finally:
        handle.stop()
