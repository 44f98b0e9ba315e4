"""The background task a full site build writes its search index with: its value, its errors, and a
clear error when its process dies."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from arxiv_digest.background import Background, BackgroundError
from arxiv_digest.errors import DigestError

FORKS = (os.cpu_count() or 1) > 1  # with one core the task runs in the caller


def test_the_result_comes_from_a_forked_process_that_sees_the_callers_data(tmp_path: Path) -> None:
    data = list(range(1000))
    task = Background(lambda: (os.getpid(), sum(data), (tmp_path / "f").write_text("x")), "summing")
    pid, total, _ = task.result()
    assert (pid != os.getpid()) == FORKS and total == sum(data)
    assert (tmp_path / "f").read_text() == "x"  # what it wrote is there once result() returns


def test_its_error_is_raised_by_result() -> None:
    def fail() -> None:
        raise DigestError("the index is unreadable; rebuild the site")

    task = Background(fail, "failing")
    with pytest.raises(DigestError, match="rebuild the site"):
        task.result()


@pytest.mark.skipif(not FORKS, reason="one core: the task would run in the test's process")
def test_a_process_that_dies_is_one_clear_error() -> None:
    task = Background(lambda: os.kill(os.getpid(), signal.SIGKILL), "writing the search index")
    with pytest.raises(BackgroundError, match=r"writing the search index stopped \(exit code -9\)"):
        task.result()


def test_with_other_threads_running_it_runs_here() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        task = Background(os.getpid, "here")
        assert task.result() == os.getpid()
    finally:
        stop.set()
        thread.join()
