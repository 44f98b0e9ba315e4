"""``beside.Beside``: work handed to a process forked early, as an incremental build hands it its search
index update. What it promises: the result or the error comes back, the child never outlives the
block, and where forking is unsafe everything runs here."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from arxiv_digest.site import SiteError
from arxiv_digest.site.beside import Beside

pytestmark = pytest.mark.usefixtures("forkable")  # each test forks, or starts the thread that keeps it from forking


def _ready_pid_file(path: Path, run: Callable[[int], object]) -> Callable[[], Callable[[int], object]]:
    """A ``ready`` that notes the process it runs in, then hands over ``run``."""

    def ready() -> Callable[[int], object]:
        path.write_text(str(os.getpid()))
        return run

    return ready


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_the_work_runs_in_another_process_and_its_result_comes_back() -> None:
    with Beside("doubling", lambda: lambda number: (2 * number, os.getpid())) as beside:
        beside.send(21)
        doubled, pid = beside.result()
    assert doubled == 42 and pid != os.getpid() and _gone(pid)


def test_an_error_in_the_child_is_raised_here_with_its_traceback_as_a_note() -> None:
    def fail(number: int) -> int:
        raise SiteError(f"posts/{number}.md: broken")

    with Beside("failing", lambda: fail) as beside:
        beside.send(7)
        with pytest.raises(SiteError, match=r"posts/7\.md: broken") as raised:
            beside.result()
    notes = "".join(getattr(raised.value, "__notes__", []))
    assert "in the process forked to run it" in notes and "in fail" in notes


def test_a_child_that_fails_getting_ready_reports_that_error_when_sent_its_work(tmp_path: Path) -> None:
    """It ends before it reads what it is sent: sending to it must not fail with a broken pipe."""
    pid_file = tmp_path / "pid"

    def ready() -> Callable[[bytes], object]:
        (tmp_path / "pid.new").write_text(str(os.getpid()))
        (tmp_path / "pid.new").rename(pid_file)
        raise SiteError("search index state: unreadable")

    with Beside("failing early", ready) as beside:
        for _ in range(2000):  # until the child has ended (a zombie until ``result`` reaps it)
            if pid_file.exists() and _state(int(pid_file.read_text())) == "Z":
                break
            time.sleep(0.005)
        beside.send(b"x" * (1 << 21))  # more than the pipe holds, to a reader that is gone
        with pytest.raises(SiteError, match="search index state: unreadable"):
            beside.result()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_child_killed_on_its_way_is_one_clear_error() -> None:
    with Beside("the search index", lambda: lambda _: os.kill(os.getpid(), signal.SIGKILL)) as beside:
        beside.send(0)
        with pytest.raises(SiteError, match="the search index: the process forked for it was killed by signal 9"):
            beside.result()


def test_a_child_sent_nothing_ends_with_the_block(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    with Beside("unused", _ready_pid_file(tmp_path / "pid", lambda _: ran.touch())):
        pass
    assert _gone(int((tmp_path / "pid").read_text())) and not ran.exists()


def test_an_error_on_its_way_out_of_the_block_is_the_one_reported(tmp_path: Path) -> None:
    def fail(_: int) -> None:
        raise OSError("disk full")

    with pytest.raises(KeyError, match="the caller's"), Beside("x", _ready_pid_file(tmp_path / "pid", fail)) as beside:
        beside.send(1)
        raise KeyError("the caller's")
    assert _gone(int((tmp_path / "pid").read_text()))  # waited for, not left running


def test_an_argument_that_cannot_be_sent_is_an_error_here_and_the_child_still_ends(tmp_path: Path) -> None:
    ready = _ready_pid_file(tmp_path / "pid", lambda _: None)
    with pytest.raises((pickle.PicklingError, AttributeError)), Beside("x", ready) as beside:
        beside.send(lambda: None)  # (a local function does not pickle)
    assert _gone(int((tmp_path / "pid").read_text()))


def test_with_another_thread_running_it_all_runs_here() -> None:
    """Forking beside other threads is unsafe (``serve`` builds beside its server's threads)."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with Beside("here", lambda: lambda _: os.getpid()) as beside:
            beside.send(0)
            assert beside.result() == os.getpid()
    finally:
        stop.set()
        other.join()


def test_now_runs_the_work_at_once_in_a_process_forked_with_what_this_one_holds() -> None:
    """A full build's search segments: written from postings only the building process holds."""
    held = {"postings": [3, 1, 2]}
    with Beside.now("sorting", lambda: (sorted(held["postings"]), os.getpid())) as beside:
        held["postings"].append(0)  # what this process does next is not what the child sees
        ordered, pid = beside.result()
    assert ordered == [1, 2, 3] and pid != os.getpid() and _gone(pid)


def test_now_lets_go_of_the_work_in_this_process() -> None:
    """The postings are freed here once the child has them: only it writes them."""

    class Postings:
        def write(self) -> int:
            return os.getpid()

    postings = Postings()
    freed = weakref.ref(postings)
    with Beside.now("writing", postings.write) as beside:
        del postings
        assert freed() is None
        assert beside.result() != os.getpid()


def test_now_reports_the_childs_error_and_runs_here_beside_other_threads() -> None:
    def fail() -> None:
        raise SiteError("segment s1: disk full")

    with pytest.raises(SiteError, match="disk full"), Beside.now("failing", fail) as beside:
        beside.result()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with Beside.now("here", os.getpid) as beside:
            assert beside.result() == os.getpid()
    finally:
        stop.set()
        other.join()
