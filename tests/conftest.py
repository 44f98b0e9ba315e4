"""Shared fixtures: a workspace whose config points at the loopback servers, and the real CLI in it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .llm_script import Script
from .support.arxiv_server import ArxivServer
from .support.browser import CHROMIUM, Browser
from .support.llm_server import LLMServer
from .support.workspace import Workspace

KEY = "sk-test-5ecret-key-0123456789"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium, one for the test process (see ``support.browser``)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install -y chromium)")
    found = Browser(CHROMIUM)
    try:
        yield found
    finally:
        found.close()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: a worker per core and one more; about a fifth of the suite's time is spent waiting
    (for Chromium, Jekyll, CLI subprocesses, servers stopping), which the extra worker fills."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first: each worker then starts on one of them while the others share
    the many short tests, instead of one worker finishing alone on a long test at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


DAY = "2026-01-15"


@dataclass
class LLMWorkspace:
    ws: Workspace
    llm: LLMServer
    script: Script

    def generate(self, day: str = DAY, *extra: str):
        return self.ws.cli("generate", "--date", day, *extra)

    def text(self, day: str = DAY) -> str:
        return self.ws.post(day).read_text(encoding="utf-8")


@pytest.fixture
def llm_ws(workspace: Workspace) -> Iterator[LLMWorkspace]:
    script = Script()
    with LLMServer(script, api_key=KEY) as server:
        workspace.use_llm(server, KEY, provider="auto", retries=2, timeout=1, concurrency=4)
        yield LLMWorkspace(workspace, server, script)


@pytest.fixture
def arxiv() -> Iterator[ArxivServer]:
    with ArxivServer(stall_seconds=3) as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path, arxiv: ArxivServer) -> Workspace:
    ws = Workspace(tmp_path).use_arxiv(
        arxiv, timeout=1, retries=3, user_agent="arxiv-digest-tests/1.0 (mailto:tests@example.org)"
    )
    return ws.configure(llm={"provider": "none"})


@pytest.fixture
def forkable() -> None:
    """For a test of what a build does in forked processes: it forks only on two cores or more and
    while no other thread runs (``site.beside``), and would otherwise do everything here and pass
    without testing the fork, so one core skips the test and a thread an earlier test left running
    fails it."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: a build forks no process")
    others = [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]
    assert not others, f"threads left running by an earlier test: {others}"
