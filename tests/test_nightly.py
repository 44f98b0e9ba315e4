"""Nightly operations: late papers, locking, kills at each stage, run reports, doctor, --commit."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from arxiv_digest.postformat import PENDING_LINE
from arxiv_digest.runlock import run_lock

from .llm_script import Script, good_answer
from .support.arxiv_server import Fault, make_paper, papers_from_listings
from .support.llm_server import LLMServer
from .support.workspace import Workspace

KEY = "sk-nightly-test-key"
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 30) -> T:
    """Poll until ``condition()`` is truthy and return it (the timeout only guards against a hang)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.002)
    return result


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


def test_late_papers_join_their_own_post_and_are_listed_in_todays(workspace: Workspace) -> None:
    on_time = make_paper("2601.00001", datetime(2026, 1, 13, 3, 0, tzinfo=UTC), title="On time paper")
    workspace.arxiv.papers.append(on_time)
    workspace.configure(window={"refresh_days": 3})
    first = workspace.cli("run", now="2026-01-14T02:30:00Z")  # 10:30 CST on 01-14
    assert first.returncode == 0, first.stderr
    assert workspace.posts() == ["2026-01-14-arxiv.md"]
    # announced a day late: submitted inside the 01-14 window, after that post was written
    late = make_paper("2601.00002", datetime(2026, 1, 13, 20, 0, tzinfo=UTC), title="Late paper")
    today = make_paper("2601.00003", datetime(2026, 1, 14, 6, 0, tzinfo=UTC), title="Today paper")
    workspace.arxiv.papers += [late, today]
    second = workspace.cli("run", now="2026-01-15T02:30:00Z")
    assert second.returncode == 0, second.stderr
    earlier = workspace.post("2026-01-14").read_text(encoding="utf-8")
    assert "Late paper" in earlier and "抓取总数：2 篇 | 本页显示：2 篇" in earlier
    todays = workspace.post("2026-01-15").read_text(encoding="utf-8")
    assert todays.count("## Today paper") == 1
    assert todays.endswith(
        "## 补录：此前窗口新增的论文\n- 2026-01-14：[Late paper](https://arxiv.org/abs/2601.00002v1)\n"
    )
    report = json.loads(sorted((workspace.root / "state" / "reports").glob("*-run.json"))[-1].read_text())
    assert report["papers"]["late"] == 1 and report["outcome"] == "ok"


def test_a_second_run_exits_at_once_while_one_holds_the_lock(workspace: Workspace) -> None:
    workspace.arxiv.papers.append(make_paper("2601.00001", datetime(2026, 1, 14, 3, 0, tzinfo=UTC)))
    with run_lock(workspace.root / "state" / "digest.sqlite3"):  # this process holds it; the CLI is another
        result = workspace.run("generate", "--date", "2026-01-15", timeout=60)
    assert result.returncode == 4
    assert "another arxiv-digest run is in progress (pid" in result.stderr
    assert workspace.posts() == [] and workspace.arxiv.requests == []  # it did not wait, nor start work


def listed(ws: Workspace) -> Workspace:
    ws.arxiv.papers.extend(papers_from_listings())
    return ws


def clean_copy(tmp_path: Path, ws: Workspace, *args: str) -> dict[str, bytes]:
    """What an uninterrupted run of the same command writes, in a fresh folder."""
    fresh = ws.fresh(tmp_path / "fresh")
    assert fresh.cli(*args).returncode in (0, 3)
    return fresh.post_bytes()


def test_kill_during_fetch_leaves_nothing_and_the_next_run_completes(workspace: Workspace, tmp_path: Path) -> None:
    ws = listed(workspace)
    ws.configure(arxiv={"page_size": 20, "timeout": 60})
    args = ("generate", "--from", "2025-06-02", "--to", "2025-06-04")  # 80 papers: 4 pages
    ws.arxiv.inject("pass", "pass", Fault("stall", seconds=60))  # the third page never comes
    process = ws.spawn(*args)
    stalled = wait_for(lambda: ws.arxiv.api_requests()[2:3])[0]
    assert stalled.fault == "stall" and stalled.status is None  # killed while waiting for that page
    kill(process)
    assert ws.posts() == []
    before = len(ws.arxiv.api_requests())
    again = ws.cli(*args)
    assert again.returncode == 0, again.stderr
    assert len(ws.arxiv.api_requests()) > before  # the killed run had left pages to fetch
    assert ws.post_bytes() == clean_copy(tmp_path, ws, *args)


def stored_texts(ws: Workspace) -> int:
    """LLM texts committed to the store so far (read beside a running process, as WAL allows)."""
    store = ws.root / "state" / "digest.sqlite3"
    if not store.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        try:
            return int(db.execute("SELECT count(*) FROM texts").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def test_kill_during_llm_keeps_finished_texts_and_the_next_run_completes(workspace: Workspace, tmp_path: Path) -> None:
    for n in range(6):
        workspace.arxiv.papers.append(make_paper(f"2601.{n:05d}", datetime(2026, 1, 14, 1, n, tzinfo=UTC)))
    answered, released = itertools.count(1), threading.Event()

    def four_then_hang(request: dict) -> str:
        """Answer four calls; hold every later one until the test lets go (after the kill)."""
        if next(answered) > 4:
            released.wait(30)
        return good_answer(request)

    with LLMServer(four_then_hang, api_key=KEY) as llm:
        workspace.use_llm(llm, KEY, provider="auto", concurrency=2)
        process = workspace.spawn("generate", "--date", "2026-01-15")
        wait_for(lambda: stored_texts(workspace) == 4 and llm.in_flight == 2)  # stuck on calls 5 and 6
        kill(process)
        released.set()
        assert workspace.posts() == [] and stored_texts(workspace) == 4
        again = workspace.cli("generate", "--date", "2026-01-15")
        assert again.returncode == 0, again.stderr
        assert "LLM 8 calls, 4 cached" in again.stdout  # the four texts done before the kill were kept
        text = workspace.post("2026-01-15").read_text(encoding="utf-8")
        assert PENDING_LINE not in text and text.count("<details>") == 6


def reader_waiting(fifo: Path) -> int | None:
    """Open ``fifo`` for writing if a process is blocked reading it (the fd), else None."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise


def test_kill_while_writing_posts_leaves_only_whole_posts(workspace: Workspace, tmp_path: Path) -> None:
    ws = listed(workspace)
    args = ("generate", "--from", "2025-06-05", "--to", "2025-06-10")
    expected = clean_copy(tmp_path, ws, *args)
    # A post that already exists is read back before it is rewritten (the rewrite guard). Make one
    # in the middle a named pipe: the run blocks there, with the posts before it written and the
    # rest not, and is killed at exactly that point.
    blocker = ws.post("2025-06-08")
    assert blocker.name in expected
    blocker.parent.mkdir(parents=True)
    os.mkfifo(blocker)
    process = ws.spawn(*args)
    fd = wait_for(lambda: reader_waiting(blocker))
    kill(process)
    os.close(fd)
    blocker.unlink()
    written = ws.post_bytes()
    assert sorted(written) == [name for name in expected if name < blocker.name]  # the rest was left to do
    assert written == {name: expected[name] for name in written}  # every post on disk is whole
    again = ws.cli(*args)
    assert again.returncode == 0, again.stderr
    assert ws.post_bytes() == expected
    assert not list((ws.root / "posts").glob(".*.tmp"))  # no temp file left (records are dot-files too)


def test_doctor_gives_a_verdict_per_part(workspace: Workspace) -> None:
    with LLMServer(Script(), api_key=KEY) as llm:
        workspace.env["DEEPSEEK_API_KEY"] = KEY
        workspace.configure(llm={"provider": "auto", "base_url": llm.base_url})
        ok = workspace.cli("doctor")
        assert ok.returncode == 0, ok.stdout
        assert [line.split()[:2] for line in ok.stdout.splitlines()] == [
            ["config", "ok"],
            ["templates", "ok"],
            ["store", "ok"],
            ["posts", "ok"],
            ["arXiv", "ok"],
            ["LLM", "ok"],
        ]
        assert len(llm.requests) == 2 and KEY not in ok.stdout  # the live probe: a translation and an explainer
    workspace.configure(arxiv={"api_url": "http://127.0.0.1:9/api/query"}, llm={"provider": "none"})
    bad = workspace.cli("doctor")
    assert bad.returncode == 1
    assert "arXiv      FAIL" in bad.stdout and "LLM        skipped" in bad.stdout


def test_commit_records_new_posts_in_git(workspace: Workspace) -> None:
    subprocess.run(["git", "init", "-q", str(workspace.root)], check=True)
    for key, value in (("user.name", "t"), ("user.email", "t@example.org")):
        subprocess.run(["git", "-C", str(workspace.root), "config", key, value], check=True)
    workspace.arxiv.papers.append(make_paper("2601.00001", datetime(2026, 1, 14, 3, 0, tzinfo=UTC)))
    result = workspace.cli("generate", "--date", "2026-01-15", "--commit")
    assert result.returncode == 0, result.stderr
    log = subprocess.run(
        ["git", "-C", str(workspace.root), "log", "--name-only", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "arXiv digest 2026-01-15: 1 papers in 1 post" in log and "posts/2026-01-15-arxiv.md" in log
    again = workspace.cli("generate", "--date", "2026-01-15", "--commit")
    assert again.returncode == 0 and "nothing to commit" in again.stdout


@pytest.mark.parametrize("days_back", [1])
def test_run_reports_failures_as_json(workspace: Workspace, days_back: int) -> None:
    workspace.arxiv.inject(*[Fault("server_error")] * 4)
    result = workspace.cli("run", now=(datetime(2026, 1, 15, 3, tzinfo=UTC) + timedelta(days=days_back)).isoformat())
    assert result.returncode == 1
    report = json.loads(next((workspace.root / "state" / "reports").glob("*-run.json")).read_text())
    assert report["outcome"] == "failed" and "HTTP 500" in report["error"] and report["exit_code"] == 1


def test_an_interrupted_backfill_resumes_where_it_stopped(workspace: Workspace, tmp_path: Path) -> None:
    ws = listed(workspace)
    ws.configure(arxiv={"page_size": 50, "retries": 1})
    args = ("generate", "--from", "2025-06-01", "--to", "2025-06-14")  # about 240 papers: 5 pages
    ws.arxiv.inject("pass", "pass", "pass", Fault("server_error"), Fault("server_error"))
    failed = ws.cli(*args)
    assert failed.returncode == 1 and ws.posts() == []
    assert "arXiv: stored" in failed.stderr  # progress lines under cron, before the failure
    first_attempt = len(ws.arxiv.api_requests())
    again = ws.cli(*args)
    assert again.returncode == 0, again.stderr
    resumed = len(ws.arxiv.api_requests()) - first_attempt
    assert "submittedDate:[20250531" not in ws.arxiv.api_requests()[first_attempt].params["search_query"]
    before_clean = len(ws.arxiv.api_requests())
    assert ws.post_bytes() == clean_copy(tmp_path, ws, *args)
    assert resumed < len(ws.arxiv.api_requests()) - before_clean  # fewer pages than starting over


def test_late_notes_for_a_day_without_a_post_move_to_the_next_post(workspace: Workspace) -> None:
    workspace.configure(window={"refresh_days": 3})
    workspace.arxiv.papers.append(make_paper("2601.00001", datetime(2026, 1, 12, 3, 0, tzinfo=UTC), title="First"))
    assert workspace.cli("run", now="2026-01-13T02:30:00Z").returncode == 0  # writes 01-13
    workspace.arxiv.papers.append(make_paper("2601.00002", datetime(2026, 1, 12, 4, 0, tzinfo=UTC), title="Late"))
    assert workspace.cli("run", now="2026-01-14T02:30:00Z").returncode == 0  # 01-14 window is empty: no post
    assert workspace.posts() == ["2026-01-13-arxiv.md"]
    workspace.arxiv.papers.append(make_paper("2601.00003", datetime(2026, 1, 14, 3, 0, tzinfo=UTC), title="Next"))
    assert workspace.cli("run", now="2026-01-15T02:30:00Z").returncode == 0
    assert "- 2026-01-13：[Late](https://arxiv.org/abs/2601.00002v1)" in workspace.post("2026-01-15").read_text(
        encoding="utf-8"
    )
