"""The preview server (``arxiv-digest serve``): serving with live reload, rebuilding on change and
keeping the last good build, path traversal, hostile requests (long segments, foreign Host headers,
200 clients at once), and how it starts and stops as the user sees it (busy port, --host 0.0.0.0,
SIGTERM)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote, urljoin

import lxml.html
import pytest

from arxiv_digest.search_query import Searcher, folder_fetch
from arxiv_digest.serve import ServeHandle, safe_path, serve
from arxiv_digest.site import SiteOptions, build_site, copy_last_build, seed, state_folder
from arxiv_digest.site.manifest import BuildState

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


def raw_request(handle: ServeHandle, path: str, host: str | None = None) -> int:
    """A request sent as is, so the client cannot normalise ``..`` away; ``host`` for the Host header."""
    address, port = handle.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {f'{address}:{port}' if host is None else host}\r\n\r\n".encode())
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
    assert raw_request(handle, "/../.a-state/build.sqlite3") == 400  # the build state is beside, not inside
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


# -- hostile requests ---------------------------------------------------------------------------------


def test_a_path_segment_longer_than_a_file_name_is_not_found_and_the_server_carries_on(
    preview: tuple[ServeHandle, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    handle, _ = preview
    for path in ("/" + "a" * 300, "/2026/" + "%C3%A9" * 200 + "/x.html", "/" + "b" * 5000 + "/"):
        assert raw_request(handle, path) == 404, path[:20]
    assert raw_request(handle, "/" + "c" * 70_000) == 414  # the request line itself is too long
    assert fetch(handle.url + "/")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("path", ["/", "/index.html", "/__livereload?gen=0", "/__livereload.js"])
def test_a_page_of_another_site_cannot_read_the_preview_by_dns_rebinding(
    preview: tuple[ServeHandle, Path], path: str
) -> None:
    handle, _ = preview
    port = handle.url.rsplit(":", 1)[1]
    for foreign in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.attacker.example:{port}", ""):
        assert raw_request(handle, path, host=foreign) == 403, foreign
    for own in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert raw_request(handle, path, host=own) == 200, own


def test_errors_sent_to_the_browser_name_files_without_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "2026-01-01-x.md").write_text("---\ntitle: [unclosed\n---\n", encoding="utf-8")
    handle = serve(SiteOptions(tmp_path / "posts", tmp_path / "site"), port=0)
    try:
        assert handle.last_error is not None and str(tmp_path) in handle.last_error  # the terminal gets it all
        status, page = fetch(handle.url + "/")
        events = fetch(handle.url + f"/__livereload?gen={handle.generation}")[1]
    finally:
        handle.stop()
    assert status == 503 and "posts/2026-01-01-x.md" in page and "not valid YAML" in page
    assert "event: failure" in events and "posts/2026-01-01-x.md" in events
    for text in (page, events):
        assert str(tmp_path) not in text and "/tmp/" not in text


def test_the_listen_backlog_holds_200_clients_arriving_at_once(tmp_path: Path) -> None:
    """The clients connect while the first build runs, before anything accepts: the kernel must
    hold them all (socketserver's default backlog of 5 left the rest timing out)."""
    write_posts(tmp_path / "posts", hostile=False)
    handle = ServeHandle(SiteOptions(tmp_path / "posts", tmp_path / "site"), "127.0.0.1", 0, (), None)
    port = int(handle.url.rsplit(":", 1)[1])
    clients = []
    try:
        for _ in range(200):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(f"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            clients.append(client)
        handle.start()
        for client in clients:
            client.settimeout(60)
            assert client.recv(12) == b"HTTP/1.0 200"
    finally:
        for client in clients:
            client.close()
        handle.stop()


# -- starting and stopping, as the user sees it ------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with posts and a config, and an empty TMPDIR for the preview's build folder."""
    write_posts(tmp_path / "posts", hostile=False)
    (tmp_path / "config.yaml").write_text("site: {posts_dir: posts}\n", encoding="utf-8")
    (tmp_path / "tmp").mkdir()
    return tmp_path


def start_cli(project: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``arxiv-digest serve`` as a user starts it; returns the process and the URL it printed."""
    env = {**os.environ, "TMPDIR": str(project / "tmp")}
    command = [sys.executable, "-m", "arxiv_digest", "-c", "config.yaml", "serve", "--port", "0", *args]
    process = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith(f"serving {project / 'posts'} at http://"), line + process.communicate(timeout=30)[1]
    return process, line.split(" at ")[1].split()[0]


def test_sigterm_stops_the_preview_and_removes_its_build_folder(project: Path) -> None:
    process, url = start_cli(project)
    assert fetch(url + "/")[0] == 200
    assert [p.name.startswith("arxiv-digest-serve-") for p in (project / "tmp").iterdir()] == [True]
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in stderr
    assert list((project / "tmp").iterdir()) == []


def test_host_0000_serves_every_interface_with_a_warning(project: Path) -> None:
    process, url = start_cli(project, "--host", "0.0.0.0")
    try:
        port = url.rsplit(":", 1)[1]
        assert url == f"http://0.0.0.0:{port}"
        assert fetch(f"http://127.0.0.1:{port}/")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert stderr.splitlines() == [
        f"WARNING: serving on every network interface: anyone who can reach this machine on port {port} can see "
        "the preview"
    ]


def test_a_busy_port_is_one_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "arxiv_digest", "-c", "config.yaml", "serve", "--port", str(port)],
            cwd=project,
            env={**os.environ, "TMPDIR": str(project / "tmp")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use (another preview?); choose another with "
        "--port, or --port 0 for any free one\n"
    )
    assert list((project / "tmp").iterdir()) == []


def _published(tmp_path: Path, search: bool = True) -> SiteOptions:
    """A site built as ``arxiv-digest site`` builds it, then one post more that it has not seen."""
    write_posts(tmp_path / "posts", hostile=False)
    (tmp_path / "templates").mkdir()
    options = SiteOptions(tmp_path / "posts", tmp_path / "_site", (tmp_path / "templates",), search=search)
    build_site(options)
    newer = (REFERENCE / REFERENCE_POSTS[1]).read_text(encoding="utf-8").replace("2026-01-15", "2026-01-16")
    (tmp_path / "posts" / "2026-01-16-arxiv.md").write_text(newer, encoding="utf-8")
    return options


def _summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Done:")]


@pytest.mark.parametrize("search", [True, False], ids=["with search", "without search"])
def test_the_preview_starts_from_the_sites_last_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, search: bool
) -> None:
    """``serve`` copies what the last build of the site left (its build state, and its search index
    when it has one), so its first build converts and indexes only the post added since, though it
    renders every page (with the preview's address); the copy's index takes updates like the site's
    own."""
    options = _published(tmp_path, search)
    caplog.set_level(logging.INFO, logger="arxiv_digest")
    handle = serve(options, port=0)
    try:
        preview = _summaries(caplog)[0]
        assert handle.live is not None and "starting from the last build of" in caplog.text
        if search:
            records = Searcher(folder_fetch(handle.live / "search")).search("speech", shown=100).records
            assert {r["u"][:10] for r in records} >= {"2026/01/16", "2026/01/15", "2025/10/31"}
        else:
            assert not (handle.live / "search").exists() and "search.html" not in fetch(handle.url + "/")[1]
        assert handle.url in fetch(handle.url + "/feed.xml")[1]
        # the folder not served was copied from the first build meanwhile: a rebuild there is incremental
        newest = (tmp_path / "posts" / "2026-01-16-arxiv.md").read_text(encoding="utf-8")
        (tmp_path / "posts" / "2026-01-17-arxiv.md").write_text(newest.replace("2026-01-16", "2026-01-17"))
        wait_for(lambda: handle.build_count == 2)
        assert handle.live.name != "a" and "(incremental build)" in _summaries(caplog)[1]
    finally:
        handle.stop()
    (tmp_path / "posts" / "2026-01-17-arxiv.md").unlink()
    same = build_site(options)  # the site itself, from the same state: it converts what the preview did
    assert "(incremental build)" in preview and f" {same.converted} conversions " in preview
    assert same.converted > 0 and f"{same.pages} paper pages" not in preview
    assert f"Done: {same.posts} posts, {len(same.written) + same.skipped} files written, 0 unchanged" in preview


@pytest.mark.parametrize("change", ["unfinished", "other code"])
def test_a_build_of_the_site_that_did_not_finish_or_by_other_code_is_not_copied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    options = _published(tmp_path)
    state = BuildState(state_folder(options))
    if change == "unfinished":
        state.mark_incomplete()  # as while a build of the site runs, or after one was killed
    else:  # its conversions are of no use to this code
        state.db.execute("UPDATE meta SET value = 'an earlier version' WHERE name = 'renderer'")
    state.close()
    caplog.set_level(logging.INFO, logger="arxiv_digest")
    handle = serve(options, port=0)
    handle.stop()
    assert "(full build)" in _summaries(caplog)[0] and "starting from" not in caplog.text


def test_a_copy_during_which_the_site_was_built_again_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build of the site that publishes its index while the copy runs (here: between copying the
    index's files and checking them) leaves nothing copied behind."""
    options = _published(tmp_path)
    copy = shutil.copytree

    def copied_while_built_again(source: Path, target: Path, *args: object, **kwargs: object) -> object:
        done = copy(source, target, *args, **kwargs)  # (copytree calls itself for each folder)
        if Path(source) == options.site_dir / "search":
            build_site(options)  # the post added since: a new index generation is published
        return done

    monkeypatch.setattr(seed.shutil, "copytree", copied_while_built_again)
    target, state = tmp_path / "preview", tmp_path / ".preview-state"
    assert not copy_last_build(options, target, state)
    assert not any(target.rglob("*")) and not any(state.rglob("*.sqlite*"))
    monkeypatch.setattr(seed.shutil, "copytree", copy)
    assert copy_last_build(options, target, state)  # nothing changed since: now it copies
    assert (target / "search" / "meta.gz").read_bytes() == (options.site_dir / "search" / "meta.gz").read_bytes()
    assert not copy_last_build(options, target, state)  # never over what is there (it is left as it is)
    assert (target / "search" / "meta.gz").read_bytes() == (options.site_dir / "search" / "meta.gz").read_bytes()


def test_a_site_without_search_is_copied_only_from_a_finished_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an index to compare, what vouches for the copy is the copied state itself: one backed
    up while a build of the site ran is dropped, though that build has finished by the check."""
    options = _published(tmp_path, search=False)
    backup = seed._backup

    def backed_up_during_a_build(path: Path, copy: Path) -> None:
        building = BuildState(path.parent)
        building.mark_incomplete()  # a build of the site starts changing files
        building.close()
        backup(path, copy)
        with sqlite3.connect(path) as db:  # and it finishes
            db.execute("UPDATE meta SET value = '1' WHERE name = 'complete'")
        db.close()

    monkeypatch.setattr(seed, "_backup", backed_up_during_a_build)
    target, state = tmp_path / "preview", tmp_path / ".preview-state"
    assert not copy_last_build(options, target, state)
    assert not any(target.rglob("*")) and not any(state.rglob("*.sqlite*"))
    monkeypatch.setattr(seed, "_backup", backup)
    assert copy_last_build(options, target, state) and not (target / "search").exists()


def test_a_second_sigterm_while_stopping_still_removes_the_build_folder(project: Path) -> None:
    """As systemd, a supervisor or a user pressing Ctrl-C twice may do: a second signal must not cut
    the clean-up short (beside a site of 3,000 posts the preview's folder holds 1.4 GB)."""
    process, url = start_cli(project)
    assert fetch(url + "/")[0] == 200
    (folder,) = (project / "tmp").iterdir()
    many = folder / "a" / "many"  # files that take the clean-up a while to remove
    many.mkdir()
    for number in range(10_000):
        (many / str(number)).touch()
    process.send_signal(signal.SIGTERM)
    while many.exists() and len(os.listdir(many)) == 10_000:  # until it is removing them
        time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in stderr
    assert list((project / "tmp").iterdir()) == []
