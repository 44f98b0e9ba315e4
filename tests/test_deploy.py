"""The deploy recipes: exit 3 once is routine, exit 3 night after night reaches a person."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WRAPPER = REPO / "deploy" / "nightly.sh"


def night(tmp_path: Path, code: int, **env: str) -> subprocess.CompletedProcess:
    """One run of deploy/nightly.sh with a stand-in arxiv-digest that exits ``code``."""
    stub = tmp_path / "arxiv-digest"
    stub.write_text(f'#!/bin/sh\necho "closing line of $*"\nexit {code}\n', encoding="utf-8")
    stub.chmod(0o755)
    variables = {**os.environ, "ARXIV_DIGEST": str(stub), **env}
    return subprocess.run(
        ["sh", str(WRAPPER), "run", "--commit"], cwd=tmp_path, env=variables, capture_output=True, text=True
    )


def test_exit_3_twice_in_a_row_is_a_warning_and_a_failure(tmp_path: Path) -> None:
    first = night(tmp_path, 3)
    assert first.returncode == 0 and first.stderr == "" and "closing line of run --commit" in first.stdout
    second = night(tmp_path, 3)
    assert second.returncode == 3
    assert "WARNING: 2 runs in a row ended with exit 3" in second.stderr
    assert night(tmp_path, 0).returncode == 0  # a clean night resets the count
    assert night(tmp_path, 3).returncode == 0


def test_the_threshold_and_the_log_are_configurable(tmp_path: Path) -> None:
    env = {"ARXIV_DIGEST_WARN_AFTER": "3", "ARXIV_DIGEST_LOG": "state/cron.log"}
    results = [night(tmp_path, 3, **env) for _ in range(3)]
    assert [r.returncode for r in results] == [0, 0, 3]
    assert [r.stdout for r in results] == ["", "", ""]  # the run's output went to the log
    assert (tmp_path / "state" / "cron.log").read_text().count("closing line") == 3
    assert "see the closing line in state/cron.log" in results[2].stderr


@pytest.mark.parametrize("code", [1, 2, 4])
def test_other_failures_pass_through_with_a_note(tmp_path: Path, code: int) -> None:
    result = night(tmp_path, code)
    assert result.returncode == code and f"arxiv-digest: exit {code}" in result.stderr


def test_every_recipe_runs_the_wrapper_and_none_hides_exit_3() -> None:
    service = (REPO / "deploy" / "systemd" / "arxiv-digest.service").read_text()
    assert "ExecStart=/srv/arxiv-digest/deploy/nightly.sh run --commit" in service
    assert "SuccessExitStatus" not in service
    crontab = (REPO / "deploy" / "crontab").read_text()
    assert "deploy/nightly.sh run --commit" in crontab and "2>&1" not in crontab
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "nightly.yml").read_text())
    steps = workflow["jobs"]["digest"]["steps"]
    run = next(s for s in steps if s.get("id") == "digest")
    assert "deploy/nightly.sh run --commit" in run["run"]
    last = steps[-1]
    assert last["if"] == "steps.digest.outputs.code == '3'" and "exit 1" in last["run"]
    names = [s.get("name") for s in steps]
    assert names.index("Push posts") < len(steps) - 1  # the posts are pushed before the run is failed
