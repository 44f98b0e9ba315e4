"""The command line as a user meets it: options on either side of the subcommand, one error path,
run reports for every run that knows where they go, and ``--commit`` recording all it wrote."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import Future
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from arxiv_digest.cli import main
from arxiv_digest.config import load_config
from arxiv_digest.engine import TextEngine
from arxiv_digest.pipeline import Digest
from arxiv_digest.runlock import run_lock
from arxiv_digest.summarize import Job

from .conftest import KEY, LLMWorkspace, Workspace
from .llm_script import Script
from .reference_posts import REFERENCE
from .support.arxiv_server import make_paper
from .support.llm_server import LLMServer
from .support.workspace import NOW


def reports(ws: Workspace) -> list[dict]:
    folder = ws.root / "state" / "reports"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


def test_config_verbose_and_quiet_work_after_the_subcommand(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.arxiv.papers.append(make_paper("2601.00001", datetime(2026, 1, 14, 3, 0, tzinfo=UTC)))
    elsewhere = tmp_path / "elsewhere"  # no config.yaml here: only --config can find the workspace's
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runner = CliRunner()
    env = {"ARXIV_DIGEST_NOW": NOW}
    after = runner.invoke(main, ["generate", "--date", "2026-01-15", "--config", str(workspace.config), "-q"], env=env)
    assert after.exit_code == 0, after.output
    assert after.stdout == "" and after.stderr == ""  # -q: no closing line, no progress lines
    first = workspace.post("2026-01-15").read_bytes()
    before = runner.invoke(main, ["-c", str(workspace.config), "generate", "--date", "2026-01-15"], env=env)
    assert before.exit_code == 0 and before.stdout.startswith("2026-01-15: fetched 1, shown 1, ")
    assert workspace.post("2026-01-15").read_bytes() == first
    debug = runner.invoke(
        main, ["generate", "--date", "2026-01-15", "--refetch", "-c", str(workspace.config), "-vv"], env=env
    )
    assert debug.exit_code == 0 and "arxiv_digest.arxiv DEBUG: batch at 0" in debug.stderr
    assert not list(elsewhere.iterdir())


def test_every_run_that_knows_its_config_leaves_a_report(workspace: Workspace) -> None:
    with run_lock(workspace.root / "state" / "digest.sqlite3"):
        locked = workspace.cli("generate", "--date", "2026-01-15")
    assert locked.returncode == 4 and locked.stderr.startswith("error: another arxiv-digest run is in progress")
    future = workspace.cli("generate", "--date", "2026-12-01")
    assert future.returncode == 2 and "in the future" in future.stderr
    done = workspace.cli("generate", "--date", "2026-01-15")
    assert done.returncode == 0, done.stderr
    assert [(r["outcome"], r["exit_code"]) for r in reports(workspace)] == [("locked", 4), ("usage", 2), ("ok", 0)]
    workspace.configure(arxiv={"request_interval": "fast"})
    invalid = workspace.cli("generate", "--date", "2026-01-15")
    assert invalid.returncode == 2 and invalid.stderr.count("\n") == 1 and "request_interval" in invalid.stderr
    assert len(reports(workspace)) == 3  # an unreadable config cannot say where reports go


def test_errors_of_other_commands_take_the_same_path(workspace: Workspace) -> None:
    result = workspace.cli("site")  # nothing generated yet: there is no posts folder
    missing = (workspace.root / "posts").resolve()
    assert result.returncode == 1 and result.stderr == f"error: posts folder {missing} does not exist\n"


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def test_the_site_command_loads_no_network_or_model_code(workspace: Workspace) -> None:
    """``site`` never calls arXiv or the LLM, so it does not even import their code: the HTTP
    client, feedparser, the LLM client and tqdm took a quarter of adding a post to 3,000 (0.23 s).
    Nor the pipeline's models: creating their ten frozen dataclasses took ~10 ms of it."""
    (workspace.root / "posts").mkdir()
    shutil.copy(REFERENCE / "daily-post-2026-01-15.md", workspace.post("2026-01-15"))
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "arxiv_digest", "-c", str(workspace.config), "site"],
        cwd=workspace.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    assert "arxiv_digest.site.build" in imported and (workspace.root / "_site" / "index.html").is_file()
    unwanted = {"httpx", "feedparser", "tqdm"}
    unwanted |= {f"arxiv_digest.{name}" for name in ("llm", "arxiv", "pipeline", "models")}
    assert imported & unwanted == set()


def test_commit_records_every_file_the_run_wrote(llm_ws: LLMWorkspace) -> None:
    ws = llm_ws.ws
    git(ws.root, "init", "-q")
    git(ws.root, "config", "user.name", "t")
    git(ws.root, "config", "user.email", "t@example.org")
    ws.configure(pages={"enabled": True})
    ws.arxiv.papers.append(make_paper("2601.00007", datetime(2026, 1, 14, 3, 0, tzinfo=UTC)))
    result = llm_ws.generate("2026-01-15", "--commit")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("committed 4 files as ")  # the post, the paper page and their records
    committed = git(ws.root, "show", "--name-only", "--format=%s", "HEAD").split()
    assert "posts/2026-01-15-arxiv.md" in committed and "posts/2026-01-14-2601.00007.md" in committed
    assert "posts/.2026-01-15-arxiv.md.json" in committed and "posts/.2026-01-14-2601.00007.md.json" in committed
    assert git(ws.root, "status", "--porcelain", "--untracked-files=all", "posts") == ""  # nothing left behind


def test_a_stopped_engine_submits_no_new_job(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(4):
        workspace.arxiv.papers.append(make_paper(f"2601.{n:05d}", datetime(2026, 1, 14, 1, n, tzinfo=UTC)))

    class StopAfterFirst(TextEngine):  # what a verdict on the model would do after one answer
        def _collect(self, job: Job, future: Future[str]) -> None:
            super()._collect(job, future)
            self.stop()

    with LLMServer(Script(), api_key=KEY, latency=0.05) as llm:
        workspace.configure(llm={"provider": "openai", "base_url": llm.base_url, "concurrency": 1})
        workspace.configure(fulltext={"enabled": False})
        monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
        with Digest(load_config(workspace.config), now=lambda: datetime.fromisoformat(NOW)) as digest:
            window = digest.window(date(2026, 1, 15))
            digest.fetch([window])
            papers = [entry.paper for entry in digest.posts.post_for(window)[0].entries]
            engine = StopAfterFirst(digest.config, digest.cache, lambda: digest.http, digest.now)
            usage, fatal = engine.fill(papers)
    assert len(papers) == 4 and fatal is None
    assert usage.calls == len(llm.requests) <= 2  # of 8 jobs: the first, and at most one already started
